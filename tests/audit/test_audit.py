"""The audit runs the workflow's own stages: on an arcal dump its numbers are that cell's, and on
any file it writes the stages' tables and a self-contained report (arcal.audit)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from arcal.analysis.bandwidth import sweep_rows
from arcal.analysis.metrics import model_metrics
from arcal.analysis.permutation import feature_tests
from arcal.analysis.planted import planted_rows
from arcal.analysis.probes import probe_rows
from arcal.audit import audit_settings
from arcal.audit.cli import audit, load_settings
from arcal.calibration import ProbeInputs
from arcal.io import load_dump

from audit_fixtures import generic_arrays


@pytest.fixture(scope="module")
def workflow_tables(tiny_dumps, settings) -> dict[str, object]:
    """What the workflow's rules compute for the Full cell (seed 1, from its dumps)."""
    d = tiny_dumps["full"]
    calib = ProbeInputs.from_dump(load_dump(d / "calib.npz"))
    test = ProbeInputs.from_dump(load_dump(d / "test.npz"))
    c = settings["calibration"]
    perm, nulls = feature_tests(test, c, 1)
    return {
        "metrics": model_metrics(load_dump(d / "test.npz"), c["n_bins"]),
        "probes": probe_rows(calib, test, c, 1),
        "permutation": perm, "nulls": nulls,
        "bandwidth": sweep_rows(calib, test, c, 1),
        "planted": planted_rows(calib, test, settings["planted"], c, 1),
    }


@pytest.fixture(scope="module")
def cli_audit(tiny_dumps, settings, tmp_path_factory) -> Path:
    """`python -m arcal.audit --calib --test` on the Full cell's dumps, no --seed."""
    tmp = tmp_path_factory.mktemp("cli-audit")
    (tmp / "settings.yaml").write_text(yaml.safe_dump(settings))
    d = tiny_dumps["full"]
    run = subprocess.run(
        [sys.executable, "-m", "arcal.audit", "--calib", str(d / "calib.npz"), "--test",
         str(d / "test.npz"), "--settings", str(tmp / "settings.yaml"), "--out", str(tmp / "out"),
         "--no-pdf"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    (tmp / "stderr.txt").write_text(run.stderr)
    return tmp


def _keyed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.set_index(keys).sort_index()


def test_the_audit_of_a_dump_gives_the_workflows_probe_table(cli_audit, workflow_tables) -> None:
    """The Done-when check: same (probe, metric) rows, values to 1e-9, the same bandwidth rules,
    multipliers and parameter counts; the dump's own seed (1) is used without --seed."""
    got = pd.read_csv(cli_audit / "out" / "probes.csv")
    want = workflow_tables["probes"]
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    g, w = _keyed(got, ["probe", "metric"]), _keyed(want, ["probe", "metric"])
    assert list(g.index) == list(w.index)
    np.testing.assert_allclose(g["value"], w["value"], rtol=0, atol=1e-9)
    assert (g["bandwidth_rule"] == w["bandwidth_rule"]).all()
    np.testing.assert_allclose(g["multiplier"], w["multiplier"], rtol=0, atol=0)
    assert (g["n_params"] == w["n_params"]).all()
    assert json.loads((cli_audit / "out" / "inputs.json").read_text())["seed"] == 1
    assert "audit: seed 1 (the dump's own)" in (cli_audit / "stderr.txt").read_text()


def test_the_audit_of_a_dump_gives_the_workflows_other_tables(cli_audit, workflow_tables) -> None:
    out = cli_audit / "out"
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"),
                                  workflow_tables["metrics"], check_exact=False, rtol=0, atol=1e-12)
    got = pd.read_csv(out / "permutation.csv")
    want = workflow_tables["permutation"]
    for col in ("feature", "method", "ran", "n_bins_used", "n_perm"):
        assert list(got[col]) == list(want[col]), col
    for col in ("max_gap", "weighted_gap", "p_value", "p_value_max"):
        np.testing.assert_allclose(got[col], want[col], rtol=0, atol=1e-12)
    with np.load(out / "permutation.null.npz") as z:
        assert set(z.files) == set(workflow_tables["nulls"])
        for k in z.files:
            np.testing.assert_array_equal(z[k], workflow_tables["nulls"][k])
    got = pd.read_csv(out / "planted.csv")
    want = workflow_tables["planted"]
    np.testing.assert_allclose(got["p_value"], want["p_value"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["ece_gain"], want["ece_gain"], rtol=0, atol=1e-12)
    assert (got["routing_probe"] == "ar-condcal").all() and (got["feature"] == "depth_var").all()
    # the bandwidth stage also sweeps nw-ragg; the workflow's rows are all there, unchanged
    got = pd.read_csv(out / "bandwidth.csv")
    want = workflow_tables["bandwidth"]
    keys = ["probe", "rule", "multiplier", "metric"]
    merged = want.merge(got, on=keys, suffixes=("_want", "_got"), how="left")
    assert merged["value_got"].notna().all() and len(merged) == len(want)
    np.testing.assert_allclose(merged["value_got"], merged["value_want"], rtol=0, atol=1e-9)
    assert set(got["probe"]) == {"nw-conf", "nw-ragg", "ar-condcal"}


def test_the_audit_writes_a_self_contained_html_report(cli_audit) -> None:
    html = (cli_audit / "out" / "report.html").read_text()
    assert "Does the feature say anything beyond confidence?" in html
    assert html.count('src="data:image/png;base64,') == 4  # reliability, nulls, bandwidth, planted
    assert "http://" not in html and "https://" not in html and "<script" not in html
    stderr = (cli_audit / "stderr.txt").read_text()
    for i, stage in enumerate(("metrics", "permutation", "probes", "bandwidth", "planted"), 1):
        assert f"audit [{i}/5] {stage}: " in stderr and f"audit [{i}/5] {stage} done in " in stderr


def test_audit_settings_stand_the_features_probes_in_for_the_routing_ones(settings) -> None:
    used = audit_settings(settings, ["gate", "depth_var"], ["A", "H"])
    c = used["calibration"]
    assert c["features"] == ["gate", "depth_var"]
    assert c["probes"] == ["raw", "temperature", "nw-conf", "nw-entropy", "nw-gate", "ar-condcal",
                           "linear-conf", "mlp-conf@A", "mlp-full@A", "mlp-shuffled@A",
                           "mlp-conf", "mlp-full", "mlp-shuffled"]
    assert c["sweep_probes"] == ["nw-conf", "nw-gate", "ar-condcal"]
    assert used["planted"]["feature"] == "depth_var"  # the configured one, audited
    assert audit_settings(settings, ["gate"], [])["planted"]["feature"] == "gate"
    assert "mlp-full" not in audit_settings(settings, ["gate"], [])["calibration"]["probes"]
    same = audit_settings(settings, ["r_agg", "depth_var"], ["H"])["calibration"]
    assert same["probes"] == settings["calibration"]["probes"]


def test_a_generic_file_is_audited_per_feature_and_deterministically(tmp_path, settings) -> None:
    """Two named features and a matrix: one test pair and one NW probe per feature, tertile ECEs
    by each, the capacity audit on the matrix; the same seed writes the same bytes."""
    arrays = {("gate" if k == "router" else k): v for k, v in generic_arrays(n=1200).items()}
    np.savez(tmp_path / "model.npz", **arrays)
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name
        audit(out=out, input=tmp_path / "model.npz", settings=settings, seed=3,
              stages=["permutation", "probes", "planted"], pdf=False)
        outs.append(out)
    perm = pd.read_csv(outs[0] / "permutation.csv")
    assert sorted(zip(perm["feature"], perm["method"])) == sorted(
        (f, m) for f in ("gate", "depth") for m in ("residualised", "within-bin"))
    probes = pd.read_csv(outs[0] / "probes.csv")
    assert {"nw-gate", "nw-depth", "mlp-full@layers", "mlp-conf@layers"} <= set(probes["probe"])
    assert {"tertile_ece_gate", "tertile_ece_depth_low"} <= set(probes["metric"])
    assert set(pd.read_csv(outs[0] / "planted.csv")["routing_probe"]) == {"nw-gate"}
    assert not (outs[0] / "bandwidth.csv").exists()
    for f in ("permutation.csv", "permutation.null.npz", "probes.csv", "planted.csv",
              "report.html", "inputs.json"):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def test_settings_come_from_config_yaml_with_a_file_merged_over(tmp_path) -> None:
    base = load_settings()
    (tmp_path / "s.yaml").write_text("calibration: {n_perm: 99}\n")
    merged = load_settings(tmp_path / "s.yaml")
    assert merged["calibration"]["n_perm"] == 99
    assert merged["calibration"]["probes"] == base["calibration"]["probes"]
    (tmp_path / "t.yaml").write_text("train: {epochs: 3}\n")
    with pytest.raises(ValueError, match="holds neither a calibration: nor a planted: block"):
        load_settings(tmp_path / "t.yaml")
    with pytest.raises(ValueError, match="no config.yaml at"):
        load_settings(None, base=tmp_path / "missing.yaml")
    (tmp_path / "typo.yaml").write_text("calibration: {n_prem: 99}\n")
    with pytest.raises(ValueError, match=r"settings: calibration: .*'n_prem' was unexpected"):
        load_settings(tmp_path / "typo.yaml")
    run = subprocess.run([sys.executable, "-m", "arcal.audit", "x.npz", "--out", str(tmp_path),
                          "--n-perm", "5"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "calibration.n_perm: 5 is less than the minimum of 19" in run.stderr


def test_the_attention_audit_of_a_baseline_and_its_summary(tiny_dumps, settings, tmp_path) -> None:
    from arcal.audit.attention import attention_audit, write_summaries

    d = tiny_dumps["baseline"]
    attention_audit(d / "calib.npz", d / "test.npz", settings, 1, tmp_path / "cell")
    probes = pd.read_csv(tmp_path / "cell" / "probes.csv")
    assert {"nw-conf", "nw-attn_entropy", "mlp-conf@A", "mlp-full@A", "mlp-shuffled@A"} <= set(
        probes["probe"])
    assert "tertile_ece_attn_entropy" in set(probes["metric"])
    perm = pd.read_csv(tmp_path / "cell" / "permutation.csv")
    assert set(perm["feature"]) == {"attn_entropy"} and len(perm) == 2
    # the same numbers as the stage functions on the dump's attention trace
    calib = ProbeInputs.from_dump(load_dump(d / "calib.npz"))
    test = ProbeInputs.from_dump(load_dump(d / "test.npz"))
    table, _ = feature_tests(test, {**settings["calibration"], "features": ["attn_entropy"]}, 1)
    np.testing.assert_allclose(perm["p_value"], table["p_value"], rtol=0, atol=0)
    cell = "tiny/vit_demo/baseline/seed1"
    out = {"attention_permutation.csv": tmp_path / "p.csv", "attention_probes.csv": tmp_path / "q.csv"}
    write_summaries([cell], {"attention_permutation.csv": [tmp_path / "cell" / "permutation.csv"],
                             "attention_probes.csv": [tmp_path / "cell" / "probes.csv"]}, out)
    summary = pd.read_csv(out["attention_probes.csv"])
    assert list(summary.columns[:4]) == ["dataset", "substrate", "variant", "seed"]
    assert (summary["seed"] == 1).all() and len(summary) == len(probes)


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed")
def test_the_readme_example_runs_and_finds_its_planted_trace(tmp_path) -> None:
    """README, "Auditing any model": the numpy snippet and the command, as written (the PDF too,
    LaTeX being here). Its trace predicts errors beyond confidence, so the suite must say so."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Auditing any model")[1].split("\n## ")[0]
    snippet = re.findall(r"```python\n(.*?)```", section, re.S)[0]
    command = re.findall(r"```sh\n(.*?)```", section, re.S)[0].strip()
    subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, check=True, timeout=120)
    assert command.startswith(".venv/bin/python -m arcal.audit ")
    args = command.split()[1:]
    run = subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "audit" / "mymodel"
    assert (out / "report.pdf").read_bytes()[:4] == b"%PDF"
    perm = pd.read_csv(out / "permutation.csv")
    assert perm["reject"].all() and (perm["feature"] == "router_entropy").all()
    probes = pd.read_csv(out / "probes.csv")
    worst = probes[probes["metric"] == "tertile_ece_router_entropy"].set_index("probe")["value"]
    assert worst["nw-router_entropy"] < worst["nw-conf"]
    assert worst["mlp-full@layer_entropy"] < worst["mlp-shuffled@layer_entropy"]
