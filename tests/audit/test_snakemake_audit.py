"""Audits as Snakemake targets: the config's `audits:` section (schema-checked), its rule, and
the baselines' attention audit in the grid (workflow/rules/audit.smk)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from arcal import grid

from audit_fixtures import generic_arrays

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def _snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run([str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture
def audit_config(tmp_path) -> Path:
    np.savez(tmp_path / "model.npz", **generic_arrays(n=1200))
    cfg = tmp_path / "audits.yaml"
    cfg.write_text(yaml.safe_dump({
        "audits": {"mine": {"input": str(tmp_path / "model.npz"), "features": ["router"],
                            "matrices": ["layers"]}},
        "calibration": {"n_perm": 99, "min_bin": 10},
        "planted": {"repetitions": 2, "deltas": [0.0, 2.0], "n_perm": 49},
    }))
    return cfg


@pytest.mark.parametrize("entry,ok", [
    ({"input": "a.npz"}, True),
    ({"calib": "c.npz", "test": "t.npz", "features": ["x"], "matrices": [], "seed": 2}, True),
    ({"input": "a.npz", "calib": "c.npz"}, False),   # one file or a pair, not both
    ({"calib": "c.npz"}, False),                     # a pair needs both
    ({"input": "a.npz", "feature": ["x"]}, False),   # unknown key (a typo)
    ({"input": "a.npz", "features": ["my feature"]}, False),
    ({"input": "a.npz", "features": []}, False),
])
def test_the_schema_checks_every_audit_entry(load_config, entry, ok) -> None:
    config = copy.deepcopy(load_config())
    config["audits"] = {"x": entry}
    if ok:
        validate(config, SCHEMA)
    else:
        with pytest.raises(WorkflowError):
            validate(config, SCHEMA)


def test_audits_default_to_none(load_config) -> None:
    config = load_config()
    assert config["audits"] == {}
    validate(config, SCHEMA)


def test_an_audit_is_a_target_and_part_of_the_default_run(audit_config, load_config,
                                                          job_counts) -> None:
    alone = _snakemake("-n", "--forceall", "results/audits/mine/report.html", "--profile",
                       "profiles/test", "--configfile", str(audit_config))
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert job_counts(alone.stdout) == {"audit": 1, "total": 1}
    everything = _snakemake("-n", "--forceall", "--profile", "profiles/test", "--configfile",
                            str(audit_config))
    assert everything.returncode == 0, everything.stderr[-3000:]
    counts = job_counts(everything.stdout)
    baselines = [c for c in grid.cells(load_config("profiles/test/grid.yaml"))
                 if c.variant == "baseline"]
    assert counts["audit"] == 1 and counts["attention"] == len(baselines) == 4
    assert counts["attention_summary"] == 1


@pytest.mark.slow
def test_the_audit_rule_runs_in_a_fresh_checkout(audit_config, checkout, tmp_path) -> None:
    repo = checkout(tmp_path / "repo")
    run = _snakemake("results/audits/mine/report.html", "--profile", "profiles/test", "--cores",
                     "1", "--configfile", str(audit_config), cwd=repo)
    assert run.returncode == 0, run.stderr[-4000:]
    out = repo / "results/audits/mine"
    for name in ("report.html", "inputs.json", "metrics.csv", "permutation.csv",
                 "permutation.null.npz", "probes.csv", "bandwidth.csv", "planted.csv"):
        assert (out / name).is_file(), name
    log = (repo / "results/logs/audit/mine.log").read_text()
    assert "audit [5/5] planted done in" in log
