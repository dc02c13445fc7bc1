"""Dumps: contract, determinism, routing profile, snapshot ensemble, end to end (arcal.dump)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from arcal.dump import dump, load_model
from arcal.io import ATTENTION_KEYS, DUMP_KEYS, load_dump
from arcal.train import CheckpointError, train
from arcal.train_config import TrainConfig

from pipeline_fixtures import needs_fashion_mnist, tiny_config


@pytest.fixture(scope="module")
def dumps(trained, tiny_data, tmp_path_factory) -> dict[str, Path]:
    out = {}
    for variant, run in trained.items():
        out[variant] = tmp_path_factory.mktemp(f"dump-{variant}")
        dump(
            run / "model.pt",
            tiny_data["splits"],
            out[variant],
            ensemble_k=2 if variant == "full" else 0,
        )
    return out


def test_dump_schema_of_a_routed_model(dumps) -> None:
    for split in ("calib", "test"):
        with np.load(dumps["full"] / f"{split}.npz") as z:
            assert set(z.files) == set(DUMP_KEYS) | {"H_cls"} | set(ATTENTION_KEYS)  # ViT: cls
            assert z["logits"].dtype == np.float32 and z["labels"].dtype == np.int64
            for key in ("H", "V", "H_cls", "r_agg", "depth_var", "A", "attn_entropy"):
                assert z[key].dtype == np.float32, key
            assert z["n_sources"].dtype == np.int64 and z["consumers"].dtype.kind == "U"
        d = load_dump(dumps["full"] / f"{split}.npz")
        assert d.logits.shape == (64, 4) and d.H.shape == (64, d.n_consumers)
        # vit_demo: 4 blocks x (attn, mlp) + output mixer, minus the single-source first mixer
        assert d.n_consumers == 8 and d.consumers[-1] == "out"
        assert np.isfinite(d.r_agg).all() and np.allclose(d.r_agg, d.H.mean(1), atol=1e-6)
        assert ((d.H >= 0) & (d.H <= 1 + 1e-6)).all()
        assert d.meta["variant"] == "full" and d.meta["split"] == split and d.meta["epoch"] == 3
        assert d.meta["accuracy"] == pytest.approx(float((d.logits.argmax(1) == d.labels).mean()))


def test_baseline_dump_has_no_consumers(dumps) -> None:
    d = load_dump(dumps["baseline"] / "test.npz")
    assert d.H.shape == (64, 0) and d.V.shape == (64, 0) and d.n_sources.shape == (0,)
    assert d.consumers.shape == (0,) and np.isnan(d.r_agg).all() and np.isnan(d.depth_var).all()
    with np.load(dumps["baseline"] / "test.npz") as z:
        assert set(z.files) <= set(DUMP_KEYS) | {"H_cls"} | set(ATTENTION_KEYS)
        assert set(DUMP_KEYS) | set(ATTENTION_KEYS) <= set(z.files)


@pytest.mark.parametrize("variant", ["baseline", "full"])
def test_every_dump_records_the_attention_entropy_of_each_layer(dumps, variant) -> None:
    """Baselines too: one normalised class-token entropy per attention layer (vit_demo: 4),
    their mean, and the layer names; what the attention audit reads."""
    d = load_dump(dumps[variant] / "test.npz")
    assert d.A.shape == (64, 4) and list(d.attn_layers) == [f"blocks.{k}.attn" for k in range(4)]
    assert ((d.A >= 0) & (d.A <= 1 + 1e-6)).all() and d.A.std() > 0
    np.testing.assert_allclose(d.attn_entropy, d.A.mean(1), atol=1e-6)


def test_a_dump_missing_part_of_the_attention_trace_is_refused(dumps, tmp_path) -> None:
    with np.load(dumps["baseline"] / "test.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "attn_layers"}
    np.savez(tmp_path / "test.npz", **arrays)
    with pytest.raises(ValueError, match=r"test\.npz: the attention trace needs all of"):
        load_dump(tmp_path / "test.npz")
    arrays["attn_layers"] = np.array(["a", "b", "c", "d"])
    arrays["A"] = arrays["A"] + 2.0
    np.savez(tmp_path / "test.npz", **arrays)
    with pytest.raises(ValueError, match="A must be finite normalised entropies"):
        load_dump(tmp_path / "test.npz")


def test_calib_and_test_dumps_hold_the_split_labels(dumps, tiny_data) -> None:
    from arcal.data import load_dataset, load_splits

    ds = load_dataset("tiny", tiny_data["root"], kind="npz")
    splits = load_splits(tiny_data["splits"], ds)
    for split in ("calib", "test"):
        np.testing.assert_array_equal(
            load_dump(dumps["full"] / f"{split}.npz").labels, ds.y_test[splits[split]].numpy()
        )


def test_routing_profile_rows_are_distributions(dumps) -> None:
    with np.load(dumps["full"] / "routing_profile.npz") as z:
        alpha, n_sources = z["alpha_mean"], z["n_sources"]
        assert list(z["consumers"]) == list(load_dump(dumps["full"] / "test.npz").consumers)
    assert alpha.shape == (8, n_sources.max())
    for row, n in zip(alpha, n_sources):
        assert np.isfinite(row[:n]).all() and np.isnan(row[n:]).all()
        assert row[:n].sum() == pytest.approx(1.0, abs=1e-5)


def test_snapshot_ensemble_averages_probabilities(dumps, trained) -> None:
    ens = load_dump(dumps["full"] / "test_ensemble.npz")
    assert ens.meta["snapshot_epochs"] == [2, 3]
    np.testing.assert_allclose(
        np.exp(ens.logits).sum(1), 1.0, rtol=1e-5
    )  # log of averaged probabilities
    single = load_dump(dumps["full"] / "test.npz")  # epoch 3 = the last snapshot
    assert ens.H.shape == single.H.shape and not np.array_equal(ens.logits, single.logits)
    assert ens.A.shape == single.A.shape and not np.array_equal(ens.A, single.A)
    np.testing.assert_allclose(ens.attn_entropy, ens.A.mean(1), atol=1e-6)
    assert (dumps["full"] / "calib_ensemble.npz").exists()
    with pytest.raises(ValueError, match="ensemble_k=5 but the run of .* kept 3 snapshot"):
        dump(trained["full"] / "model.pt", None, dumps["full"] / "x", ensemble_k=5)


def test_ensemble_refuses_a_snapshot_of_another_run(trained, tmp_path) -> None:
    """A snapshot left in the folder by an earlier run (other weights key) is never averaged in."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained["full"], run)
    shutil.copy2(trained["baseline"] / "snapshots" / "epoch3.pt", run / "snapshots" / "epoch3.pt")
    with pytest.raises(CheckpointError, match=r"snapshot .*epoch3\.pt belongs to another training"):
        dump(run / "model.pt", None, tmp_path / "dump", ensemble_k=2)


def test_same_seed_gives_byte_identical_dumps(tiny_data, tmp_path) -> None:
    for name in ("a", "b"):
        train(
            tiny_config(
                tiny_data, epochs=1, variant="block", block_size=2, crop_padding=1, flip=True
            ),
            tmp_path / name,
        )
        dump(tmp_path / name / "model.pt", tiny_data["splits"], tmp_path / name / "dump")
    for split in ("calib", "test"):
        with (
            np.load(tmp_path / "a" / "dump" / f"{split}.npz") as za,
            np.load(tmp_path / "b" / "dump" / f"{split}.npz") as zb,
        ):
            assert za.files == zb.files
            for key in za.files:
                assert za[key].tobytes() == zb[key].tobytes(), key


def test_truncated_model_file_is_a_clear_error(trained, tmp_path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes((trained["full"] / "model.pt").read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or truncated.*re-run training"):
        load_model(bad, "cpu")
    with pytest.raises(FileNotFoundError, match="train the cell first"):
        load_model(tmp_path / "missing.pt", "cpu")


@needs_fashion_mnist
def test_fashion_mnist_end_to_end_through_the_command_lines(tmp_path) -> None:
    """data -> train -> dump on a 1,000-image Fashion-MNIST subset, as the workflow runs them."""
    py = [sys.executable, "-m"]
    splits = tmp_path / "data" / "splits.npz"
    run, out = tmp_path / "train", tmp_path / "dumps"
    subprocess.run(
        py
        + [
            "arcal.data",
            "--dataset",
            "fashion-mnist",
            "--n-train",
            "1000",
            "--n-calib",
            "200",
            "--n-test",
            "200",
            "--out",
            str(splits),
        ],
        check=True,
    )
    cfg = TrainConfig(
        splits=str(splits),
        substrate="vit_demo",
        variant="block",
        block_size=2,
        epochs=3,
        warmup_epochs=0.2,
        crop_padding=0,
        flip=False,
        batch_size=32,
        lr=2e-3,
        device="cpu",
        threads=1,
    )
    (tmp_path / "run.json").write_text(json.dumps(cfg.__dict__))
    subprocess.run(
        py + ["arcal.train", "--config", str(tmp_path / "run.json"), "--out", str(run)], check=True
    )
    subprocess.run(
        py
        + [
            "arcal.dump",
            "--model",
            str(run / "model.pt"),
            "--splits",
            str(splits),
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        check=True,
    )
    test = load_dump(out / "test.npz")
    assert test.n == 200 and test.n_classes == 10 and test.n_consumers > 0
    assert test.meta["dataset"] == "fashion-mnist" and test.meta["substrate"] == "vit_demo"
    assert test.meta["accuracy"] > 0.3  # 3 epochs of 1,000 images; chance is 0.1
    assert json.loads((tmp_path / "data" / "manifest.json").read_text())["sizes"]["train"] == 1000


def test_the_final_snapshot_is_not_evaluated_again(trained, tmp_path, monkeypatch) -> None:
    """The run ends on a snapshot epoch (3), so the ensemble of epochs 2 and 3 takes epoch 3's
    predictions from the final model's pass: per split, one pass of the final model and one of
    snapshot 2, and dumps byte-identical to those of evaluating every snapshot."""
    import arcal.dump

    passes = []
    predict = arcal.dump._predict

    def counted(model, *args):
        passes.append(model)
        return predict(model, *args)

    monkeypatch.setattr(arcal.dump, "_predict", counted)
    dump(trained["full"] / "model.pt", None, tmp_path / "reused", ensemble_k=2)
    assert len(passes) == 4  # (final, snapshot 2) x (calib, test)
    monkeypatch.setattr(arcal.dump, "same_weights", lambda a, b: False)
    dump(trained["full"] / "model.pt", None, tmp_path / "all", ensemble_k=2)
    assert len(passes) == 4 + 6
    for name in ("calib", "test", "calib_ensemble", "test_ensemble"):
        with (
            np.load(tmp_path / "reused" / f"{name}.npz") as za,
            np.load(tmp_path / "all" / f"{name}.npz") as zb,
        ):
            assert za.files == zb.files
            for key in za.files:
                assert za[key].tobytes() == zb[key].tobytes(), (name, key)


def test_same_weights_tells_snapshots_apart(trained) -> None:
    from arcal.dump import same_weights

    run = trained["full"]
    final, _ = load_model(run / "model.pt", "cpu")
    last, _ = load_model(run / "snapshots" / "epoch3.pt", "cpu")
    earlier, _ = load_model(run / "snapshots" / "epoch2.pt", "cpu")
    assert same_weights(final, last) and not same_weights(final, earlier)
