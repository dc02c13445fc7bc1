"""The paper's attention table (report.tables "attention"): the baselines' attention audit,
gathered per cell by arcal.audit.attention.write_summaries and rendered over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arcal.audit.attention import SUMMARIES, write_summaries
from arcal.report.tables import attention_context, render_string


def _cell(d: Path, seed: int, p_paper: float, worst_attn: float) -> dict[str, Path]:
    d.mkdir(parents=True)
    pd.DataFrame([
        {"feature": "attn_entropy", "method": m, "ran": True, "n_bins_used": 9, "max_gap": 0.1,
         "weighted_gap": 0.02 + 0.01 * seed, "p_value": p, "p_value_max": 0.5, "n_perm": 199,
         "reject": p <= 0.05}
        for m, p in (("residualised", 0.4), ("within-bin", p_paper))
    ]).to_csv(d / "permutation.csv", index=False)
    rows = []
    for probe, worst, nll in (("nw-conf", 0.030 + 0.002 * seed, 0.3), ("nw-attn_entropy", worst_attn, 0.3),
                              ("mlp-conf@A", 0.04, 0.31), ("mlp-full@A", 0.04, 0.32),
                              ("mlp-shuffled@A", 0.04, 0.33)):
        nw = probe.startswith("nw-")
        rows += [{"probe": probe, "bandwidth_rule": "cv-nll" if nw else "none",
                  "multiplier": 1.0 if nw else np.nan, "metric": metric, "value": value,
                  "n_params": 2} for metric, value in
                 (("tertile_ece_attn_entropy", worst), ("nll", nll), ("ece", 0.02))]
    pd.DataFrame(rows).to_csv(d / "probes.csv", index=False)
    return {"permutation": d / "permutation.csv", "probes": d / "probes.csv"}


def test_the_attention_table_summarises_seeds(tmp_path) -> None:
    cells = ["fm/vit_demo/baseline/seed0", "fm/vit_demo/baseline/seed1"]
    files = [_cell(tmp_path / c, s, p, w) for c, s, p, w in
             zip(cells, (0, 1), (0.01, 0.3), (0.020, 0.022))]
    write_summaries(cells, {name: [f[per.removesuffix(".csv")] for f in files]
                            for name, per in SUMMARIES.items()},
                    {name: tmp_path / name for name in SUMMARIES})
    ctx = attention_context(tmp_path)
    paper = next(r for r in ctx["tests"] if r["method"] == "within-bin")
    assert (paper["n_reject"], paper["n_ran"]) == (1, 2)
    assert paper["weighted_gap"].mean == pytest.approx(0.025) and paper["mean_p"] == pytest.approx(0.155)
    (row,) = ctx["rows"]
    assert row["worst_conf"].mean == pytest.approx(0.031)
    assert row["worst_attn"].mean == pytest.approx(0.021)
    assert row["band"] == "below"  # 0.021 < 0.031 - std(0.030, 0.032)
    assert [s.mean for s in row["capacity"]] == pytest.approx([0.31, 0.32, 0.33])
    tex = render_string("attention", tmp_path)
    assert r"$0.021 \pm 0.001$ $\downarrow$" in tex and "1/2" in tex


def test_the_attention_table_says_when_the_grid_has_no_baseline(tmp_path) -> None:
    write_summaries([], {name: [] for name in SUMMARIES}, {name: tmp_path / name for name in SUMMARIES})
    tex = render_string("attention", tmp_path)
    assert tex.count("No baseline models in this grid: no attention audit.") == 2
