"""Session fixtures of the pipeline tests: the tiny dataset with splits, and small trained runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcal.data import load_dataset, make_splits, write_splits
from arcal.train import train
from pipeline_fixtures import make_npz, tiny_config


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny npz dataset with a splits file: 256 train images, 64 calib + 64 test."""
    root = tmp_path_factory.mktemp("tiny")
    npz = make_npz(root / "tiny.npz")
    ds = load_dataset("tiny", str(npz), kind="npz")
    splits = make_splits(len(ds.x_train), len(ds.x_test), seed=0, n_calib=64, n_test=64)
    write_splits(root / "data" / "splits.npz", ds, splits, seed=0)
    return {"root": str(npz), "splits": str(root / "data" / "splits.npz")}


@pytest.fixture(scope="session")
def trained(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny runs (baseline and full, snapshots every epoch), trained once per session."""
    runs = {}
    for variant in ("baseline", "full"):
        out = tmp_path_factory.mktemp(f"run-{variant}")
        train(tiny_config(tiny_data, variant=variant, epochs=3, snapshot_stride=1), out)
        runs[variant] = out
    return runs
