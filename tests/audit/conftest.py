"""Fixtures of the audit tests: small settings in the config's shape, tiny arcal dumps (a
baseline and a Full AttnRes model trained for seconds), and a valid generic input."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from audit_fixtures import generic_arrays

ROOT = Path(__file__).resolve().parents[2]


def _pipeline_fixtures():
    """tests/pipeline/pipeline_fixtures.py (the tiny dataset and run config), by path."""
    spec = importlib.util.spec_from_file_location(
        "audit_pipeline_fixtures", ROOT / "tests" / "pipeline" / "pipeline_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def settings() -> dict:
    """config.yaml's calibration: and planted: blocks, made cheap (the probes keep their
    settings, so their numbers are the configured ones)."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    s = {"calibration": copy.deepcopy(config["calibration"]),
         "planted": copy.deepcopy(config["planted"])}
    s["calibration"].update(n_perm=199, min_bin=10, cv_multipliers={"min": 0.25, "max": 4.0, "n": 5})
    s["planted"].update(deltas=[0.0, 2.0], repetitions=3, n_perm=99)
    return s


@pytest.fixture(scope="session")
def tiny_dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Dumps of a baseline and a Full AttnRes vit_demo (seed 1) on a tiny texture dataset with
    200 calibration and 200 test images: {variant: folder with calib.npz and test.npz}."""
    from arcal.data import load_dataset, make_splits, write_splits
    from arcal.dump import dump
    from arcal.train import train

    pf = _pipeline_fixtures()
    root = tmp_path_factory.mktemp("audit-tiny")
    npz = pf.make_npz(root / "tiny.npz", n_train=256, n_test=400)
    ds = load_dataset("tiny", str(npz), kind="npz")
    splits = make_splits(len(ds.x_train), len(ds.x_test), seed=0, n_calib=200, n_test=200)
    write_splits(root / "splits.npz", ds, splits, seed=0)
    data = {"root": str(npz), "splits": str(root / "splits.npz")}
    out = {}
    for variant in ("baseline", "full"):
        run = root / f"run-{variant}"
        train(pf.tiny_config(data, variant=variant, epochs=1, seed=1), run)
        out[variant] = root / f"dump-{variant}"
        dump(run / "model.pt", data["splits"], out[variant], device="cpu")
    return out


@pytest.fixture
def generic() -> dict[str, np.ndarray]:
    return generic_arrays()
