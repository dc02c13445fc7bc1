"""Datasets, splits, augmentation and batching (arcal.data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from arcal.data import (
    Batches,
    DatasetError,
    augment,
    check_npz_labels,
    load_dataset,
    load_splits,
    make_splits,
    normalize,
    write_splits,
)

from pipeline_fixtures import make_npz, needs_fashion_mnist


def test_splits_are_disjoint_sized_and_deterministic() -> None:
    a = make_splits(1000, 400, seed=3, n_train=300, n_calib=150, n_test=200)
    b = make_splits(1000, 400, seed=3, n_train=300, n_calib=150, n_test=200)
    c = make_splits(1000, 400, seed=4, n_train=300, n_calib=150, n_test=200)
    assert {k: len(v) for k, v in a.items()} == {"train": 300, "calib": 150, "test": 200}
    assert not set(a["calib"]) & set(a["test"])
    assert len(set(a["train"])) == 300 and a["train"].max() < 1000 and a["test"].max() < 400
    for k in a:
        assert a[k].dtype == np.int64
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["calib"], c["calib"])
    assert len(make_splits(1000, 400, seed=0, n_calib=10, n_test=10)["train"]) == 1000


def test_splits_reject_sizes_beyond_the_test_split() -> None:
    with pytest.raises(ValueError, match="n_calib=300 \\+ n_test=200"):
        make_splits(1000, 400, seed=0, n_calib=300, n_test=200)
    with pytest.raises(ValueError, match="n_train=2000"):
        make_splits(1000, 400, seed=0, n_train=2000, n_calib=10, n_test=10)


def test_missing_fashion_mnist_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion-mnist", root=str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path) in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "download: true" in msg


def test_truncated_idx_file_is_reported(tmp_path: Path) -> None:
    import gzip

    for stem, magic in (
        ("train-images-idx3-ubyte", 2051),
        ("t10k-images-idx3-ubyte", 2051),
        ("train-labels-idx1-ubyte", 2049),
        ("t10k-labels-idx1-ubyte", 2049),
    ):
        header = magic.to_bytes(4, "big") + (10).to_bytes(4, "big")
        if magic == 2051:
            header += (28).to_bytes(4, "big") * 2
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(header + b"\0" * 5))
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("fashion-mnist", root=str(tmp_path))


@pytest.mark.parametrize(
    "kind, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")]
)
def test_cifar_without_data_gives_the_expected_layout(
    tmp_path: Path, kind: str, folder: str
) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset(kind, root=str(tmp_path / "nowhere"), download=False)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and folder in msg and "download: true" in msg


def test_unknown_kind_lists_the_choices() -> None:
    with pytest.raises(DatasetError, match="tiny-imagenet"):
        load_dataset("mnist")


def test_npz_dataset_loads_in_any_channel_layout(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz", n_train=20, n_test=10)
    ds = load_dataset("mine", str(path), kind="npz")
    assert ds.x_train.shape == (20, 1, 16, 16) and ds.x_train.dtype == torch.uint8
    assert ds.y_test.dtype == torch.int64 and ds.classes[0] == "horizontal" and not ds.natural
    rgb = np.random.default_rng(0).integers(0, 255, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(
        tmp_path / "rgb.npz",
        x_train=rgb,
        y_train=np.arange(6) % 2,
        x_test=rgb[:2],
        y_test=np.array([0, 1]),
    )
    ds = load_dataset("rgb", str(tmp_path / "rgb.npz"), kind="npz")
    assert ds.x_train.shape == (6, 3, 8, 8) and ds.classes == ["0", "1"]
    np.testing.assert_array_equal(ds.x_train[1, 2].numpy(), rgb[1, :, :, 2])


def test_npz_dataset_rejects_float_images(tmp_path: Path) -> None:
    x = np.zeros((4, 8, 8), np.float32)
    np.savez(
        tmp_path / "f.npz", x_train=x, y_train=np.zeros(4, int), x_test=x, y_test=np.zeros(4, int)
    )
    with pytest.raises(DatasetError, match="uint8"):
        load_dataset("f", str(tmp_path / "f.npz"), kind="npz")


def _labelled_npz(path: Path, y_train: np.ndarray, y_test: np.ndarray, **extra) -> Path:
    x = np.zeros((len(y_train), 8, 8), np.uint8)
    np.savez(path, x_train=x, y_train=y_train, x_test=x[: len(y_test)], y_test=y_test, **extra)
    return path


@pytest.mark.parametrize(
    ("y_train", "y_test", "extra", "message"),
    [
        # a stray id in one split would silently make an extra class
        (np.r_[np.arange(10).repeat(3), 10], np.arange(10).repeat(2), {},
         r"not every id occurs in both splits: 10 \(1 in y_train, 0 in y_test\)"),
        (np.arange(10).repeat(3), np.r_[np.arange(10), 10], {}, r"10 \(0 in y_train, 1 in y_test\)"),
        (np.arange(4).repeat(3) + 0.5, np.arange(4) + 0.5, {}, r"y_train must hold integer class ids, got "
         r"dtype float64 .*truncated"),
        (np.arange(4).repeat(3)[:, None], np.arange(4)[:, None], {},
         r"y_train must have shape \(12,\).* got \(12, 1\); flatten it with y.ravel\(\)"),
        (np.zeros(12, int), np.zeros(4, int), {}, "y_train holds a single class"),
        (np.arange(4).repeat(3), np.arange(4) - 1, {}, "y_test holds negative class ids"),
        (np.arange(4).repeat(3), np.arange(4), {"classes": np.array(["a", "b", "c"])},
         r"y_train holds class id 3, but `classes` names 3 classes"),
    ],
    ids=["stray-train-id", "stray-test-id", "float", "column", "one-class", "negative", "classes"],
)
def test_npz_labels_are_checked(tmp_path: Path, y_train, y_test, extra, message) -> None:
    path = _labelled_npz(tmp_path / "d.npz", y_train, y_test, **extra)
    with pytest.raises(DatasetError, match=message):
        load_dataset("mine", str(path), kind="npz")
    with pytest.raises(DatasetError, match=message):  # the same check without the images
        check_npz_labels(str(path))


def test_npz_classes_array_allows_a_class_missing_from_a_split(tmp_path: Path) -> None:
    path = _labelled_npz(tmp_path / "d.npz", np.arange(3).repeat(3), np.array([0, 1, 0]),
                         classes=np.array(["a", "b", "c"]))
    assert load_dataset("mine", str(path), kind="npz").classes == ["a", "b", "c"]


def test_corrupt_splits_or_manifest_name_the_file(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz", n_train=40, n_test=30)
    ds = load_dataset("d", str(path), kind="npz")
    splits = tmp_path / "out" / "splits.npz"
    write_splits(splits, ds, make_splits(40, 30, seed=1, n_calib=10, n_test=10), seed=1)
    manifest = splits.with_name("manifest.json")
    good = manifest.read_text()
    manifest.write_text(good[:40])
    with pytest.raises(ValueError, match=rf"manifest {manifest} is unreadable .*delete {splits.parent}"):
        load_splits(splits, ds)
    manifest.write_text("{}")
    with pytest.raises(ValueError, match=rf"manifest {manifest} lacks the `sha256` checksums"):
        load_splits(splits, ds)
    manifest.write_text(good)
    splits.write_bytes(splits.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"splits file {splits} is unreadable \(BadZipFile"):
        load_splits(splits, ds)


def _png(path: Path, value: int, mode: str = "L") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (8, 8), value if mode == "L" else (value, 0, 0)).save(path)


def test_folder_dataset_loads_class_per_folder(tmp_path: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for c, value in (("cat", 10), ("dog", 200)):
            for i in range(n):
                _png(tmp_path / split / c / f"{i}.png", value)
    ds = load_dataset("pets", str(tmp_path), kind="folder")
    assert ds.classes == ["cat", "dog"] and ds.x_train.shape == (6, 1, 8, 8)
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.x_test[ds.y_test == 1].float().mean() == 200
    _png(tmp_path / "test" / "dog" / "rgb.png", 50, mode="RGB")
    assert load_dataset("pets", str(tmp_path), kind="folder").x_train.shape == (6, 3, 8, 8)


def test_folder_dataset_with_mismatched_classes_says_the_layout(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "cat" / "0.png", 1)
    _png(tmp_path / "test" / "dog" / "0.png", 1)
    with pytest.raises(DatasetError, match="root/train/<class>"):
        load_dataset("pets", str(tmp_path), kind="folder")


def test_tiny_imagenet_layout_loads(tmp_path: Path) -> None:
    from PIL import Image

    wnids = ["n01", "n02"]
    for j, w in enumerate(wnids):
        for i in range(2):
            p = tmp_path / "train" / w / "images" / f"{w}_{i}.JPEG"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 64), (j * 200, 0, 0)).save(p)
    (tmp_path / "val" / "images").mkdir(parents=True)
    lines = []
    for i, w in enumerate(["n02", "n01", "n02"]):
        Image.new("RGB", (64, 64), (0, 0, 0)).save(tmp_path / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (tmp_path / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\tsalamander\n")
    ds = load_dataset("tiny-imagenet", str(tmp_path))
    assert ds.x_train.shape == (4, 3, 64, 64) and ds.x_test.shape == (3, 3, 64, 64)
    assert ds.classes == ["goldfish", "salamander"] and ds.y_test.tolist() == [1, 0, 1]
    with pytest.raises(DatasetError, match="val_annotations.txt"):
        load_dataset("tiny-imagenet", str(tmp_path / "train"))


def test_manifest_pins_checksums_and_load_splits_checks_them(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "d.npz", n_train=40, n_test=30)
    ds = load_dataset("d", str(path), kind="npz")
    splits = make_splits(40, 30, seed=1, n_train=20, n_calib=10, n_test=10)
    write_splits(tmp_path / "out" / "splits.npz", ds, splits, seed=1)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["sizes"] == {"train": 20, "calib": 10, "test": 10}
    assert manifest["classes"] == ds.classes and len(manifest["sha256"]["x_train"]) == 64
    back = load_splits(tmp_path / "out" / "splits.npz", ds)
    for k in splits:
        np.testing.assert_array_equal(back[k], splits[k])
    other = load_dataset(
        "d", str(make_npz(tmp_path / "e.npz", n_train=40, n_test=30, seed=9)), kind="npz"
    )
    with pytest.raises(ValueError, match="differs"):
        load_splits(tmp_path / "out" / "splits.npz", other)


@needs_fashion_mnist
def test_fashion_mnist_loads_from_the_debian_package() -> None:
    ds = load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10 and ds.classes[9] == "Ankle boot"
    assert abs(ds.mean[0] - 0.286) < 1e-3 and abs(ds.std[0] - 0.353) < 1e-3


def test_augment_is_seeded_and_shifts_or_flips() -> None:
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    a = augment(x, torch.Generator().manual_seed(0), crop_padding=2, flip=True)
    b = augment(x, torch.Generator().manual_seed(0), crop_padding=2, flip=True)
    assert a.shape == x.shape and torch.equal(a, b)
    flipped = augment(x, torch.Generator().manual_seed(0), crop_padding=0, flip=True)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    many = augment(
        x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(1), crop_padding=0, flip=True
    )
    n_flipped = sum(torch.equal(m, x[i % 2].flip(-1)) for i, m in enumerate(many))
    assert 20 < n_flipped < 80
    crops = augment(x.repeat(50, 1, 1, 1), torch.Generator().manual_seed(2), crop_padding=2)
    for i, c in enumerate(crops):  # every crop is a shifted window of the zero-padded image
        padded = torch.nn.functional.pad(x[i % 2], (2, 2, 2, 2))
        assert any(
            torch.equal(c, padded[:, r : r + 6, q : q + 6]) for r in range(5) for q in range(5)
        )
    assert (crops == 0).any()  # some crops reach into the padding


def test_normalize_uses_the_channel_statistics() -> None:
    x = torch.full((1, 2, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, (0.5, 0.0), (0.25, 1.0))
    assert torch.allclose(out[0, 0], torch.full((2, 2), 2.0)) and torch.allclose(
        out[0, 1], torch.ones(2, 2)
    )


def test_batches_cover_each_image_once_per_pass_in_a_seeded_order() -> None:
    x, y = torch.arange(10)[:, None], torch.arange(10)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    b1, b2 = Batches(x, y, 4, g1), Batches(x, y, 4, g2)
    first = torch.cat([yb for _, yb in b1])
    assert sorted(first.tolist()) == list(range(10)) and len(b1) == 3
    assert torch.equal(first, torch.cat([yb for _, yb in b2]))
    assert not torch.equal(first, torch.cat([yb for _, yb in b1]))  # reshuffled on the next pass
    dropped = Batches(x, y, 4, torch.Generator().manual_seed(0), drop_last=True)
    assert len(dropped) == 2 and all(len(yb) == 4 for _, yb in dropped)
    assert torch.equal(torch.cat([yb for _, yb in Batches(x, y, 3)]), y)
