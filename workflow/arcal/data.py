"""Datasets, deterministic splits, tensor augmentation and the batch iterator.

Every supported dataset is small enough to hold in memory, so a loader returns the whole
official train and test splits as uint8 tensors (N, C, H, W) with int64 labels. Training then
runs on resident tensors (on the GPU when there is one): augmentation is a few batched tensor
operations seeded through a `torch.Generator`, and batches come from a seeded permutation, with
no DataLoader workers, so a CPU run is bit-for-bit reproducible.

Splits: the training subset is drawn from the official train split;
the calibration and test splits are disjoint parts of the official test split.

Command line (the workflow's data stage):
    python -m arcal.data --dataset fashion-mnist --n-calib 1000 --n-test 1000 \
        --out results/data/fashion-mnist/splits.npz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from arcal.io import atomic_save_npz, atomic_write_json

log = logging.getLogger(__name__)

KINDS = ("fashion-mnist", "cifar10", "cifar100", "tiny-imagenet", "folder", "npz")
FASHION_MNIST_DEBIAN = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}

# Per-dataset augmentation defaults: random-crop padding in pixels and horizontal flips.
# Flips keep the label of clothing and natural photos; for users' own data (digits, text,
# medical scans) they may not, so the generic loaders default to no augmentation.
CROP_PADDING = {
    "fashion-mnist": 2,
    "cifar10": 4,
    "cifar100": 4,
    "tiny-imagenet": 8,
    "folder": 0,
    "npz": 0,
}
FLIP_OK = {
    "fashion-mnist": True,
    "cifar10": True,
    "cifar100": True,
    "tiny-imagenet": True,
    "folder": False,
    "npz": False,
}


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message says where we looked and how to get it."""


@dataclass
class ImageDataset:
    """The official train and test splits of one dataset, held in memory.

    x_*: uint8 (N, C, H, W); y_*: int64 (N,); `classes[j]` names label j. `natural` says whether
    horizontal flips keep the label (the default of the `flip` augmentation). `mean`/`std` are the
    per-channel statistics of the training images in [0, 1], used to normalise the inputs; they
    are computed on first use (a dump normalises with those its model stored, and skips them).
    """

    name: str
    kind: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    natural: bool

    @cached_property
    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(self.x_train)

    @property
    def mean(self) -> tuple[float, ...]:
        return self._stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        return self._stats[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def img_size(self) -> int:
        return int(self.x_train.shape[2])

    @property
    def default_crop_padding(self) -> int:
        return CROP_PADDING[self.kind]


# ----------------------------------------------------------------------------- loaders


def _fashion_mnist(root: str | None, download: bool) -> tuple[np.ndarray, ...]:
    """Fashion-MNIST from the IDX files: the Debian package folder, a given folder, or "
    "torchvision."""
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    if download:
        import torchvision

        if root is None:
            raise DatasetError("fashion-mnist: download: true needs a root folder to download into")
        try:
            torchvision.datasets.FashionMNIST(root, train=True, download=True)
            torchvision.datasets.FashionMNIST(root, train=False, download=True)
        except Exception as exc:
            raise DatasetError(
                f"fashion-mnist: torchvision could not download into {root}: {exc}"
            ) from exc
    candidates = (
        [Path(root), Path(root) / "FashionMNIST" / "raw"] if root else [Path(FASHION_MNIST_DEBIAN)]
    )
    for folder in candidates:
        files = {}
        for key, stem in names.items():
            found = [
                folder / (stem + ext) for ext in (".gz", "") if (folder / (stem + ext)).is_file()
            ]
            if found:
                files[key] = found[0]
        if len(files) == 4:
            return tuple(_read_idx(files[k]) for k in names)
    looked = " and ".join(str(c) for c in candidates)
    raise DatasetError(
        f"fashion-mnist: the four IDX files ({', '.join(n + '[.gz]' for n in names.values())}) "
        f"are not in {looked}. Install them with `apt-get install dataset-fashion-mnist` "
        f"(files in {FASHION_MNIST_DEBIAN}), point `root` at a folder holding them, or set "
        "`download: true` with a root folder where the network allows it."
    )


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format): magic 2051 = images (N, 28, 28), 2049 = labels (N,)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatasetError(f"fashion-mnist: cannot read {path}: {exc}") from exc
    magic = int.from_bytes(data[:4], "big") if len(data) >= 8 else -1
    if magic == 2051 and len(data) >= 16:
        n, h, w = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
        arr, expected = np.frombuffer(data, np.uint8, offset=16), n * h * w
        shape: tuple[int, ...] = (n, 1, h, w)
    elif magic == 2049:
        n = int.from_bytes(data[4:8], "big")
        arr, expected, shape = np.frombuffer(data, np.uint8, offset=8), n, (n,)
    else:
        raise DatasetError(
            f"fashion-mnist: {path} is not an IDX file (magic {magic}); reinstall the data"
        )
    if arr.size != expected:
        raise DatasetError(
            f"fashion-mnist: {path} is truncated ({arr.size} of {expected} values); reinstall the "
            "data"
        )
    return arr.reshape(shape)


def _cifar(kind: str, root: str | None, download: bool) -> tuple:
    """CIFAR-10/100 through torchvision (md5-checked), from a local root or a download."""
    import torchvision

    cls, folder, archive = {
        "cifar10": (torchvision.datasets.CIFAR10, "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        "cifar100": (torchvision.datasets.CIFAR100, "cifar-100-python", "cifar-100-python.tar.gz"),
    }[kind]
    if root is None:
        raise DatasetError(
            f"{kind}: no root folder configured; set `root` (e.g. data/{kind}) in the config"
        )
    try:
        train, test = (cls(root, train=t, download=download) for t in (True, False))
    except Exception as exc:
        raise DatasetError(
            f"{kind}: no valid copy under {os.path.abspath(root)} ({exc}). torchvision expects "
            f"{root}/{folder}/ with the official 'python version' files (md5-checked), or the "
            f"archive {root}/{archive}; set `download: true` to fetch it where the network allows."
        ) from exc
    x_tr, x_te = (np.ascontiguousarray(d.data.transpose(0, 3, 1, 2)) for d in (train, test))
    return x_tr, np.asarray(train.targets), x_te, np.asarray(test.targets), list(train.classes)


def _read_image(path: Path, mode: str | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert(mode) if mode else im
            arr = np.asarray(im, dtype=np.uint8)
    except Exception as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise DatasetError(
            f"{where}: images differ in size/channels {sorted(shapes)[:4]}; resize them to one size"
        )
    return np.stack(images)


def _image_mode(paths: list[Path]) -> str:
    """'L' when every image is single-channel grey, else 'RGB'."""
    from PIL import Image

    for p in paths:
        with Image.open(p) as im:
            if im.mode not in ("L", "1", "I;16", "I"):
                return "RGB"
    return "L"


def _folder(root: str | None) -> tuple:
    """Users' own images: `root/train/<class>/*` and `root/test/<class>/*` (class names sorted)."""
    layout = "root/train/<class>/<image> and root/test/<class>/<image> (same class folders)"
    if root is None or not (Path(root) / "train").is_dir() or not (Path(root) / "test").is_dir():
        raise DatasetError(
            f"folder: no train/ and test/ folders under {root}; expected layout {layout}"
        )
    classes = sorted(p.name for p in (Path(root) / "train").iterdir() if p.is_dir())
    test_classes = sorted(p.name for p in (Path(root) / "test").iterdir() if p.is_dir())
    if not classes or test_classes != classes:
        raise DatasetError(
            f"folder: class folders of {root}/train {classes} and {root}/test {test_classes} "
            f"differ or are empty; expected {layout}"
        )
    files: dict[str, list[tuple[Path, int]]] = {}
    for split in ("train", "test"):
        files[split] = [
            (p, j)
            for j, c in enumerate(classes)
            for p in sorted((Path(root) / split / c).iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not files[split]:
            raise DatasetError(
                f"folder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}/{split}"
            )
    mode = _image_mode([p for p, _ in files["train"] + files["test"]])
    out = []
    for split in ("train", "test"):
        out.append(
            _stack([_read_image(p, mode) for p, _ in files[split]], f"folder {root}/{split}")
        )
        out.append(np.array([j for _, j in files[split]]))
    return (*out, classes)


def _npz(root: str | None) -> tuple:
    """Users' own arrays: x_train, y_train, x_test, y_test (uint8 images; optional `classes`)."""
    need = ("x_train", "y_train", "x_test", "y_test")
    if root is None or not Path(root).is_file():
        raise DatasetError(
            f"npz: file {root} not found; `root` must be an .npz with arrays {', '.join(need)} "
            "(uint8 images (N, H, W), (N, H, W, C) or (N, C, H, W)) and optional `classes`"
        )
    with np.load(root, allow_pickle=False) as z:
        missing = [k for k in need if k not in z.files]
        if missing:
            raise DatasetError(f"npz: {root} lacks arrays {missing}; it needs {', '.join(need)}")
        arrays = {k: z[k] for k in z.files}
    xs = []
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype != np.uint8:
            raise DatasetError(f"npz: {root}:{key} must be uint8 (0-255), got {x.dtype}")
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)
        elif x.ndim != 4 or x.shape[1] not in (1, 3):
            raise DatasetError(
                f"npz: {root}:{key} has shape {x.shape}; use (N, H, W), (N, H, W, C) or (N, C, H, "
                "W) with C in (1, 3)"
            )
        xs.append(np.ascontiguousarray(x))
    y_train, y_test, classes = _npz_targets(root, arrays, len(xs[0]), len(xs[1]))
    return xs[0], y_train, xs[1], y_test, classes


def check_npz_labels(root: str) -> None:
    """The label checks of the npz loader without reading the images (the workflow runs them
    before its first job); DatasetError naming the array and the fix."""
    from arcal.checks import npz_shapes

    shapes = npz_shapes(root)
    need = ("x_train", "y_train", "x_test", "y_test")
    missing = [k for k in need if k not in shapes]
    if missing:
        raise DatasetError(f"npz: {root} lacks arrays {missing}; it needs {', '.join(need)}")
    with np.load(root, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("y_train", "y_test", "classes") if k in z.files}
    _npz_targets(root, arrays, shapes["x_train"][0], shapes["x_test"][0])


def _npz_targets(
    root: str, arrays: dict[str, np.ndarray], n_train: int, n_test: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Checked labels of both splits and the class names of an npz dataset."""
    y_train = _npz_labels(root, "y_train", arrays["y_train"], n_train)
    y_test = _npz_labels(root, "y_test", arrays["y_test"], n_test)
    classes = _npz_classes(root, arrays.get("classes"), y_train, y_test)
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.max() >= len(classes):
            raise DatasetError(
                f"npz: {root}:{key} holds class id {y.max()}, but `classes` names "
                f"{len(classes)} classes (ids 0..{len(classes) - 1})"
            )
    _require_two_classes(y_train, f"npz: {root}:y_train")
    return y_train, y_test, classes


def _require_two_classes(y: np.ndarray, where: str) -> None:
    """A classifier and its calibration need at least two classes among the training labels."""
    present = np.unique(y)
    if len(present) < 2:
        raise DatasetError(
            f"{where} holds a single class ({present.tolist()}); a classifier and its calibration "
            "need at least two"
        )


def _npz_labels(root: str, key: str, y: np.ndarray, n: int) -> np.ndarray:
    """Labels as given: integer class ids of shape (N,), one per image, none negative."""
    if not np.issubdtype(y.dtype, np.integer):
        raise DatasetError(
            f"npz: {root}:{key} must hold integer class ids, got dtype {y.dtype} (a float label "
            "would be truncated); store them with y.astype(np.int64) once they are whole numbers"
        )
    if y.shape != (n,):
        raise DatasetError(
            f"npz: {root}:{key} must have shape ({n},), one class id per image, got {y.shape}"
            + ("; flatten it with y.ravel()" if y.size == n else "")
        )
    if n == 0:
        raise DatasetError(f"npz: {root}:{key} is empty; each split needs images")
    if y.min() < 0:
        raise DatasetError(f"npz: {root}:{key} holds negative class ids (min {y.min()})")
    return y


def _npz_classes(
    root: str, names: np.ndarray | None, y_train: np.ndarray, y_test: np.ndarray
) -> list[str]:
    """Class names: the file's `classes` array, or the ids 0..K-1 when both splits hold exactly
    those ids (a stray id in one split would otherwise add a class silently)."""
    if names is not None:
        if names.ndim != 1:
            raise DatasetError(
                f"npz: {root}:classes must be a 1-D array of names, got shape {names.shape}"
            )
        return [str(c) for c in names]
    ids = np.arange(max(int(y_train.max()), int(y_test.max())) + 1)
    counts = {
        key: np.bincount(y, minlength=len(ids))
        for key, y in (("y_train", y_train), ("y_test", y_test))
    }
    odd = [j for j in ids if not (counts["y_train"][j] and counts["y_test"][j])]
    if odd:
        shown = ", ".join(
            f"{j} ({counts['y_train'][j]} in y_train, {counts['y_test'][j]} in y_test)"
            for j in odd[:5]
        )
        raise DatasetError(
            f"npz: {root} has no `classes` array, so its classes are the ids 0..{ids[-1]}, but not "
            f"every id occurs in both splits: {shown}. Fix the stray labels, or add a `classes` "
            "array naming every class if a split really lacks some"
        )
    return [str(j) for j in ids]


def _tiny_imagenet(root: str | None) -> tuple:
    """Tiny-ImageNet-200: train/<wnid>/images/*.JPEG, val/images/* + val/val_annotations.txt."""
    layout = (
        "train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt "
        "(tiny-imagenet-200.zip unpacked)"
    )
    base = Path(root) if root else None
    if (
        base is None
        or not (base / "train").is_dir()
        or not (base / "val" / "val_annotations.txt").is_file()
    ):
        raise DatasetError(
            f"tiny-imagenet: {layout} not found under {root}; download tiny-imagenet-200.zip from "
            "http://cs231n.stanford.edu/ and unpack it there"
        )
    wnids = sorted(p.name for p in (base / "train").iterdir() if p.is_dir())
    index = {w: j for j, w in enumerate(wnids)}
    train = [
        (p, index[w])
        for w in wnids
        for p in sorted((base / "train" / w / "images").glob("*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
    ]
    val = []
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DatasetError(
                f"tiny-imagenet: bad line in {base}/val/val_annotations.txt: {line!r}"
            )
        val.append((base / "val" / "images" / parts[0], index[parts[1]]))
    words = {}
    if (base / "words.txt").is_file():
        words = dict(
            line.split("\t", 1)
            for line in (base / "words.txt").read_text().splitlines()
            if "\t" in line
        )
    classes = [words.get(w, w).split(",")[0].strip() for w in wnids]
    x_tr = _stack([_read_image(p, "RGB") for p, _ in train], f"tiny-imagenet {base}/train")
    x_te = _stack([_read_image(p, "RGB") for p, _ in sorted(val)], f"tiny-imagenet {base}/val")
    return (
        x_tr,
        np.array([j for _, j in train]),
        x_te,
        np.array([j for _, j in sorted(val)]),
        classes,
    )


def channel_stats(
    x: torch.Tensor, chunk: int = 4096
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images scaled to [0, 1] (float64 sums)."""
    s = torch.zeros(x.shape[1], dtype=torch.float64)
    s2 = torch.zeros_like(s)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].to(torch.float64) / 255.0
        s += xb.sum(dim=(0, 2, 3))
        s2 += (xb * xb).sum(dim=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / n
    std = (s2 / n - mean**2).clamp_min(1e-12).sqrt()
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def load_dataset(
    name: str, root: str | None = None, download: bool = False, kind: str | None = None
) -> ImageDataset:
    """Load a dataset's official train and test splits into memory.

    `kind` picks the loader (one of KINDS) and defaults to `name`; `root` is the local folder
    (or .npz file) and `download` lets torchvision fetch CIFAR / Fashion-MNIST into `root`.
    Missing or malformed data raise DatasetError saying where we looked and how to get the data.
    """
    kind = kind or name
    if kind not in KINDS:
        raise DatasetError(
            f"unknown dataset kind {kind!r} for dataset {name!r}; choose one of {', '.join(KINDS)}"
        )
    if kind == "fashion-mnist":
        x_tr, y_tr, x_te, y_te = _fashion_mnist(root, download)
        classes = list(FASHION_MNIST_CLASSES)
    elif kind in ("cifar10", "cifar100"):
        x_tr, y_tr, x_te, y_te, classes = _cifar(kind, root, download)
    elif kind == "tiny-imagenet":
        x_tr, y_tr, x_te, y_te, classes = _tiny_imagenet(root)
    elif kind == "folder":
        x_tr, y_tr, x_te, y_te, classes = _folder(root)
    else:
        x_tr, y_tr, x_te, y_te, classes = _npz(root)
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if len(x) != len(y) or len(x) == 0:
            raise DatasetError(f"{name}: {split} split has {len(x)} images and {len(y)} labels")
        if y.min() < 0 or y.max() >= len(classes):
            raise DatasetError(
                f"{name}: {split} labels span [{y.min()}, {y.max()}], outside the "
                f"{len(classes)} classes [0, {len(classes)})"
            )
    _require_two_classes(y_tr, f"{name}: the train split")
    if x_tr.shape[1:] != x_te.shape[1:] or x_tr.shape[2] != x_tr.shape[3]:
        raise DatasetError(
            f"{name}: train images {x_tr.shape[1:]} and test images {x_te.shape[1:]} must be "
            "equal and square"
        )
    return ImageDataset(
        name=name,
        kind=kind,
        x_train=torch.from_numpy(np.array(x_tr, dtype=np.uint8, order="C")),
        y_train=torch.from_numpy(np.asarray(y_tr, dtype=np.int64)),
        x_test=torch.from_numpy(np.array(x_te, dtype=np.uint8, order="C")),
        y_test=torch.from_numpy(np.asarray(y_te, dtype=np.int64)),
        classes=[str(c) for c in classes],
        natural=FLIP_OK[kind],
    )


# ----------------------------------------------------------------------------- splits


def make_splits(
    n_train_total: int,
    n_test_total: int,
    seed: int,
    n_train: int | None = None,
    n_calib: int = 5000,
    n_test: int = 5000,
) -> dict[str, np.ndarray]:
    """Sorted int64 index arrays: `train` into the official train split (n_train of them, all if
    None); `calib` and `test` disjoint subsets of the official test split, drawn from one seeded
    permutation (calib first, test next)."""
    if n_train is not None and not 1 <= n_train <= n_train_total:
        raise ValueError(
            f"n_train={n_train} must lie in [1, {n_train_total}] (the official train split) or be "
            "null"
        )
    if n_calib < 1 or n_test < 1 or n_calib + n_test > n_test_total:
        raise ValueError(
            f"n_calib={n_calib} + n_test={n_test} must be >= 1 each and at most {n_test_total} "
            "(the official test split)"
        )
    rng = np.random.default_rng(seed)
    train = (
        np.arange(n_train_total)
        if n_train is None
        else np.sort(rng.permutation(n_train_total)[:n_train])
    )
    perm = rng.permutation(n_test_total)
    return {
        "train": train.astype(np.int64),
        "calib": np.sort(perm[:n_calib]).astype(np.int64),
        "test": np.sort(perm[n_calib : n_calib + n_test]).astype(np.int64),
    }


def sha256(t: torch.Tensor | np.ndarray) -> str:
    a = t.numpy() if isinstance(t, torch.Tensor) else t
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def dataset_checksums(ds: ImageDataset) -> dict[str, str]:
    """sha256 of the raw bytes of the image and label arrays (what a manifest pins)."""
    return {k: sha256(getattr(ds, k)) for k in ("x_train", "y_train", "x_test", "y_test")}


def write_splits(
    path: str | os.PathLike, ds: ImageDataset, splits: dict[str, np.ndarray], seed: int
) -> dict:
    """Write `splits.npz` (index arrays) and `manifest.json` beside it, atomically; return the "
    "manifest."""
    path = Path(path)
    manifest = {
        "dataset": ds.name,
        "kind": ds.kind,
        "classes": ds.classes,
        "image_shape": list(ds.x_train.shape[1:]),
        "n_train_total": len(ds.x_train),
        "n_test_total": len(ds.x_test),
        "sizes": {k: int(len(v)) for k, v in splits.items()},
        "seed": seed,
        "mean": list(ds.mean),
        "std": list(ds.std),
        "sha256": dataset_checksums(ds),
        "splits_sha256": {k: sha256(v) for k, v in splits.items()},
    }
    atomic_save_npz(path, **splits)
    atomic_write_json(path.with_name("manifest.json"), manifest)
    return manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """Read a `manifest.json` written by `write_splits`; ValueError naming the file if it is not
    one (edited by hand, truncated)."""
    path = Path(path)
    redo = f"delete {path.parent} and re-run the data stage (rule `splits`)"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"manifest {path} is unreadable ({exc}); {redo}") from exc
    checksums = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(checksums, dict):
        raise ValueError(f"manifest {path} lacks the `sha256` checksums of the data; {redo}")
    return manifest


def load_splits(path: str | os.PathLike, ds: ImageDataset | None = None) -> dict[str, np.ndarray]:
    """Read `splits.npz`; with `ds`, check the indices fit it and that it matches the manifest's
    checksums (so a changed dataset copy cannot silently mix with old splits)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"splits file {path} not found; create it with `python -m arcal.data` (the data stage)"
        )
    redo = f"delete {path.parent} and re-run the data stage (rule `splits`)"
    try:
        with np.load(path, allow_pickle=False) as z:
            splits = {k: z[k].astype(np.int64) for k in ("train", "calib", "test") if k in z.files}
    except Exception as exc:  # zipfile / format errors of a truncated or foreign file
        raise ValueError(
            f"splits file {path} is unreadable ({type(exc).__name__}: {exc}); {redo}"
        ) from exc
    if len(splits) != 3:
        raise ValueError(f"splits file {path} must hold arrays train, calib and test; {redo}")
    if ds is not None:
        manifest_path = path.with_name("manifest.json")
        if manifest_path.is_file():
            recorded = read_manifest(manifest_path)["sha256"]
            actual = dataset_checksums(ds)
            changed = [k for k in recorded if recorded[k] != actual.get(k)]
            if changed:
                raise ValueError(
                    f"dataset {ds.name} differs from the one {path} was made from "
                    f"({', '.join(changed)} changed); delete {path.parent} and re-run the data "
                    "stage"
                )
        for key, n in (
            ("train", len(ds.x_train)),
            ("calib", len(ds.x_test)),
            ("test", len(ds.x_test)),
        ):
            if len(splits[key]) and (splits[key].min() < 0 or splits[key].max() >= n):
                raise ValueError(
                    f"splits file {path}: {key} indices out of range for {ds.name} ({n} images)"
                )
    return splits


# ----------------------------------------------------------------------------- tensors


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (or [0, 1] float) images (B, C, H, W) -> float32 (x / 255 - mean) / std per channel."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s


def augment(
    x: torch.Tensor, generator: torch.Generator, crop_padding: int = 0, flip: bool = False
) -> torch.Tensor:
    """Batched random crop (zero padding of `crop_padding` pixels, then a crop back to H x W at a
    random offset per image) and random horizontal flip (probability 1/2 per image).

    Works on any device: the random numbers come from the CPU `generator` and are moved to
    `x.device`, so the same seed gives the same augmentation on CPU and GPU.
    """
    b, _, h, w = x.shape
    if crop_padding > 0:
        p = crop_padding
        oy = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        ox = torch.randint(0, 2 * p + 1, (b,), generator=generator).to(x.device)
        xp = torch.nn.functional.pad(x, (p, p, p, p))
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        bi = torch.arange(b, device=x.device)[:, None, None, None]
        ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if flip:
        mask = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x


class Batches:
    """Mini-batches of resident tensors `(x[i], y[i])`, reshuffled every pass with `generator`.

    Without a generator the order is fixed (evaluation). `drop_last` drops a final short batch
    (training, so every step sees `batch_size` images).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator
        self.drop_last = drop_last and len(x) >= batch_size

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.generator is not None else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min((i + 1) * self.batch_size, n))
            if order is None:
                yield self.x[sl], self.y[sl]
            else:
                idx = order[sl].to(self.x.device)
                yield self.x[idx], self.y[idx]


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m arcal.data",
        description="Write a dataset's deterministic splits and manifest.",
    )
    ap.add_argument(
        "--dataset", required=True, help="dataset name (also the loader kind unless --kind)"
    )
    ap.add_argument("--kind", choices=KINDS, default=None)
    ap.add_argument("--root", default=None, help="local folder (or .npz) holding the data")
    ap.add_argument(
        "--download", action="store_true", help="let torchvision download (needs network)"
    )
    ap.add_argument("--n-train", type=int, default=None, help="training subset size (default: all)")
    ap.add_argument("--n-calib", type=int, required=True)
    ap.add_argument("--n-test", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", required=True, help="path of splits.npz (manifest.json goes beside it)"
    )
    ap.add_argument("--log", default=None, help="also write the log to this file")
    args = ap.parse_args(argv)
    from arcal.logs import setup

    setup(args.log)
    ds = load_dataset(args.dataset, args.root, args.download, args.kind)
    splits = make_splits(
        len(ds.x_train), len(ds.x_test), args.seed, args.n_train, args.n_calib, args.n_test
    )
    write_splits(args.out, ds, splits, args.seed)
    log.info("wrote %s: %s", args.out, {k: len(v) for k, v in splits.items()})


if __name__ == "__main__":
    main()
