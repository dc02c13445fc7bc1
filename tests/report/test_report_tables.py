"""Each table renders from the synthetic summary with the expected formatted numbers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pytest

from arcal.report.latex import Stat
from arcal.report.tables import TABLES, _band_position, render_string, render_table


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_renders_deterministically(
    name: str, summary_dir: Path, tmp_path: Path
) -> None:
    a = render_table(name, summary_dir, tmp_path / "a" / f"{name}.tex")
    b = render_table(name, summary_dir, tmp_path / "b" / f"{name}.tex")
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "\\VAR{" not in text and "\\BLOCK{" not in text
    if name not in ("numbers", "planted_text"):  # macros and a paragraph, not tables
        assert "\\toprule" in text and "\\bottomrule" in text
        assert text.count("\\begin{") == text.count("\\end{")


def test_metrics_table_numbers_and_escaped_names(summary_dir: Path) -> None:
    text = render_string("metrics", summary_dir)
    assert (
        r"Fashion-MNIST & vit\_demo & Baseline & 3 & $0.810 \pm 0.010$ & $0.060 \pm 0.010$" in text
    )
    assert r"$0.911 \pm 0.010$ & $0.161 \pm 0.010$ & $0.711 \pm 0.010$ & $0.391 \pm 0.010$" in text
    assert "vit_demo" not in text.replace(r"vit\_demo", "")


def test_secondary_table(summary_dir: Path) -> None:
    text = render_string("secondary", summary_dir)
    # mce base 0.150, classwise 0.020, smooth 0.045; cifar10 adds 0.1; mean over seeds adds 0.01
    assert r"$0.260 \pm 0.010$ & $0.130 \pm 0.010$ & $0.155 \pm 0.010$" in text


def test_permutation_table_counts(summary_dir: Path) -> None:
    """Both tests side by side: rejections among the tests that ran, BH within each test's family,
    and the test that could not run in its own column, counted nowhere else."""
    text = render_string("permutation", summary_dir)
    assert r"All tests & residualised (ours) & & & & & 5/47 & 3/47 & 1 \\" in text
    assert r"All tests & within-bin (paper) & & & & & 10/48 & 6/48 & 0 \\" in text
    assert r"& $0.110 \pm 0.010$ & 0.500 & $0.021 \pm 0.001$ &" in text
    assert "at level\n0.05;" in text


def test_probe_table_scores_and_band_mark(summary_dir: Path) -> None:
    text = render_string("probes", summary_dir)
    # nw-conf: 0.02 + 0.001 * 2 + 0.002 * seed -> 0.024 +- 0.002; ar-condcal 0.027 lies above its band
    assert r"\texttt{nw-conf} & $0.024 \pm 0.002$ & $0.024 \pm 0.002$ & $0.024 \pm 0.002$" in text
    assert r"\texttt{ar-condcal} & $0.027 \pm 0.002$ & $0.027 \pm 0.002$ $\uparrow$" in text
    assert text.count(r"\texttt{mlp-shuffled}") == 8


def test_bandwidth_table_has_scott_cv_and_labelled_oracle(summary_dir: Path) -> None:
    text = render_string("bandwidth", summary_dir)
    for m in ("0.25", "0.5", "1", "2", "4"):
        assert rf"$\times{m}$" in text
    assert "Oracle (test ECE)" in text and r"\emph{oracle}" in text
    assert r"$0.034 \pm 0.002$ [1] & $0.031 \pm 0.002$ [0.5]" in text  # ar-condcal CV-NLL, oracle


def test_capacity_table_parameter_counts(summary_dir: Path) -> None:
    text = render_string("capacity", summary_dir)
    assert r"\texttt{mlp-full} & 289 & $0.030 \pm 0.002$ & $0.530 \pm 0.002$" in text
    assert r"\texttt{linear-conf} & 2 &" in text


def test_numbers_macros(summary_dir: Path) -> None:
    text = render_string("numbers", summary_dir)
    for macro, value in [
        ("NumTests", "48"),
        ("NumTestsRanRobust", "47"),
        ("NumTestsNotRunRobust", "1"),
        ("NumRejectionsRobust", "5"),
        ("NumRejectionsBHRobust", "3"),
        ("NumTestsRanPaper", "48"),
        ("NumTestsNotRunPaper", "0"),
        ("NumRejectionsPaper", "10"),
        ("NumRejectionsBHPaper", "6"),
        ("NumRuns", "36"),
        ("NumARRuns", "24"),
        ("MeanAccuracy", "0.860"),
        ("NumProbeGroups", "8"),
        ("CondCalAboveBand", "8"),
        ("CondCalWithinBand", "0"),
        ("SubstrateList", r"swin\_demo, vit\_demo"),
        ("NumBandwidthConfigs", "56"),
    ]:
        assert f"\\newcommand{{\\{macro}}}{{{value}}}%" in text, macro


def test_band_position() -> None:
    band = Stat(0.024, 0.002, 3)
    assert _band_position(Stat(0.025, 0.01, 3), band) == "within"
    assert _band_position(Stat(0.021, 0.0, 3), band) == "below"
    assert _band_position(Stat(0.027, 0.0, 3), band) == "above"
    assert _band_position(Stat(0.024, 0.0, 1), Stat(0.024, float("nan"), 1)) == "within"


def test_grid_without_attnres_still_renders(baseline_only_summary: Path) -> None:
    for name in TABLES:
        render_string(name, baseline_only_summary)
    assert "No AttnRes models in this grid" in render_string("permutation", baseline_only_summary)
    assert "\\newcommand{\\NumTests}{0}%" in render_string("numbers", baseline_only_summary)


def test_missing_metric_is_an_error(summary_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(summary_dir, tmp_path / "s")
    df = pd.read_csv(tmp_path / "s" / "metrics.csv")
    df[df["metric"] != "brier"].to_csv(tmp_path / "s" / "metrics.csv", index=False)
    with pytest.raises(ValueError, match="brier"):
        render_string("metrics", tmp_path / "s")


def test_template_missing_key_raises(
    summary_dir: Path, tmp_path: Path, templates_dir: Path
) -> None:
    shutil.copytree(templates_dir, tmp_path / "t")
    tpl = tmp_path / "t" / "metrics.tex.j2"
    tpl.write_text(tpl.read_text().replace(r"\VAR{r.brier|pm}", r"\VAR{r.brier_score|pm}"))
    with pytest.raises(jinja2.UndefinedError, match="brier_score"):
        render_string("metrics", summary_dir, tmp_path / "t")


def test_unknown_table_and_missing_summary(summary_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        render_string("nope", summary_dir)
    with pytest.raises(ValueError, match="metrics.csv"):
        render_string("metrics", tmp_path)


def test_cli_matches_library(summary_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tables" / "permutation.tex"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "arcal.report.tables",
            "permutation",
            "--summary",
            str(summary_dir),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == render_string("permutation", summary_dir)


def test_nw_probe_without_the_primary_rule_is_an_error(summary_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(summary_dir, tmp_path / "s")
    df = pd.read_csv(tmp_path / "s" / "probes.csv")
    df.loc[df["probe"] == "ar-condcal", "bandwidth_rule"] = "scott"
    df.to_csv(tmp_path / "s" / "probes.csv", index=False)
    with pytest.raises(ValueError, match="ar-condcal"):
        render_string("probes", tmp_path / "s")


def test_planted_table_pools_seeds_and_names_smallest_detected_delta(summary_dir: Path) -> None:
    planted = pd.read_csv(summary_dir / "planted.csv")
    table = render_string("planted", summary_dir)
    text = render_string("planted_text", summary_dir)
    assert "residualised (ours) & within-bin (paper)" in table
    rows = planted[(planted["dataset"] == "fashion-mnist") & (planted["substrate"] == "vit_demo")
                   & (planted["variant"] == "full")]
    rates = {}
    for (delta, method), g in rows.groupby(["delta", "method"]):
        k = (g["reject_rate"] * g["n_ran"]).sum()
        rates[delta, method] = k / g["n_ran"].sum()
    achieved = rows[rows["delta"] == 2.0]["achieved_effect"]
    line = (f"$\\mathrm{{depth\\_var}}$ & 2 & ${achieved.mean():.3f} \\pm {achieved.std():.3f}$ & "
            f"{rates[2.0, 'residualised']:.2f} [")
    assert line in table
    assert f"{rates[2.0, 'within-bin']:.2f} [" in table.split(line)[1].split("\n")[0]
    for method, label in (("residualised", "residualised (ours)"), ("within-bin", "within-bin (paper)")):
        first = min((d for d in (0.5, 2.0) if rates[d, method] >= 0.8), default=None)
        head = f"Fashion-MNIST/\\allowbreak{{}}vit\\_demo/\\allowbreak{{}}Full ($\\mathrm{{depth\\_var}}$, {label}):\n"
        assert head in text
        tail = text.split(head)[1]
        assert tail.startswith(f"$\\delta = {first:g}$" if first else "none of the planted sizes")
    for method, label in (("residualised", "residualised (ours)"), ("within-bin", "within-bin (paper)")):
        at_zero = planted[(planted["delta"] == 0) & (planted["method"] == method)]
        pooled = at_zero.groupby(["dataset", "substrate", "variant"]).apply(
            lambda g: (g["reject_rate"] * g["n_ran"]).sum() / g["n_ran"].sum(), include_groups=False)
        assert f"{pooled.max():.2f} for the {label} test" in text


def test_paired_differences_match_scipy_ttest_rel(summary_dir: Path) -> None:
    """The paired comparison is scipy's paired t interval, and its sign count is the seeds on
    which AR-CondCal is lower."""
    from scipy.stats import ttest_rel

    from arcal.report.tables import paired_differences

    probes = pd.read_csv(summary_dir / "probes.csv")
    probes = probes[probes["bandwidth_rule"].isin(["none", "cv-nll"])].copy()
    rng = np.random.default_rng(0)  # make the differences vary over seeds
    probes.loc[probes["probe"] == "ar-condcal", "value"] += rng.normal(0, 0.003, (probes["probe"] == "ar-condcal").sum())
    got = paired_differences(probes, "ece")
    assert len(got) == 8
    for row in got.itertuples():
        sel = probes[(probes["dataset"] == row.dataset) & (probes["substrate"] == row.substrate)
                     & (probes["variant"] == row.variant) & (probes["metric"] == "ece")]
        a = sel[sel["probe"] == "ar-condcal"].sort_values("seed")["value"].to_numpy()
        b = sel[sel["probe"] == "nw-conf"].sort_values("seed")["value"].to_numpy()
        ci = ttest_rel(a, b).confidence_interval(0.95)
        assert (row.lo, row.hi) == pytest.approx((ci.low, ci.high), rel=1e-10)
        assert row.mean == pytest.approx(np.mean(a - b)) and row.n_lower == int(np.sum(a < b))
    text = render_string("paired", summary_dir)
    # synthetic: ar-condcal is nw-conf + 0.003 on every seed -> a zero-width interval above zero
    assert r"& 3 & $0.0030$ [$0.0030$, $0.0030$] & 0/3 &" in text
    numbers = render_string("numbers", summary_dir)
    assert "\\newcommand{\\PairedCIAboveZero}{8}%" in numbers
    assert "\\newcommand{\\PairedCIContainsZero}{0}%" in numbers


def test_temporal_table_compares_final_and_ensemble(summary_dir: Path) -> None:
    text = render_string("temporal", summary_dir)
    # final ECE 0.05 and ensemble 0.025 on every seed; r_agg p = 0.3, 0.4, 0.5 over seeds, depth_var 0.6
    assert r"& final & $0.860 \pm 0.010$ & $0.050 \pm 0.000$ & $0.400 \pm 0.000$ &  &  \\" in text
    # the ensemble's row carries its p-values, columns depth_var, r_agg
    assert r"& ensemble & $0.869 \pm 0.010$ & $0.025 \pm 0.000$ & $0.360 \pm 0.000$ & 0.600 & 0.400 \\" in text
    assert text.count("vit\\_demo") == 2  # one row group per dataset
