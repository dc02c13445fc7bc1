"""LaTeX tables and prose macros rendered from the summary CSVs (jinja2 templates in paper/templates).

Each table is a named entry of ``TABLES``: its template, the summary files it reads (Snakemake
inputs) and a context builder. Every number is mean +- sample std over seeds, formatted by the
template's ``pm`` filter (``$0.123 \\pm 0.004$``). ``numbers`` renders ``\\newcommand`` macros for
every number the paper's prose uses, so no statistic is typed by hand.

Comparisons against a seed-variance band (e.g. AR-CondCal against nw-conf): for a quantity
with seed mean m and sample std s, the band is [m - s, m + s] (s = 0 with one seed); another
probe is *within* the band when its seed mean lies in it, *below* / *above* otherwise.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from arcal.io import atomic_write_text
from arcal.report.aggregate import BASELINE, CAPACITY_PROBES, GROUP_KEYS, seed_stats
from arcal.report.latex import Stat, display_name, fmt_g, fmt_num, make_env, tex_escape

#: Default template folder: ``paper/templates`` of the repository (override with ARCAL_TEMPLATES).
DEFAULT_TEMPLATES = Path(
    os.environ.get("ARCAL_TEMPLATES", Path(__file__).resolve().parents[3] / "paper" / "templates")
)

VARIANT_ORDER = {"baseline": 0, "block": 1, "full": 2}
PROBE_ORDER = (
    "raw",
    "temperature",
    "nw-conf",
    "nw-entropy",
    "nw-ragg",
    "ar-condcal",
    "linear-conf",
    "mlp-conf",
    "mlp-full",
    "mlp-shuffled",
)
#: NW probes are reported under this bandwidth rule in the probe and capacity tables.
PRIMARY_RULE = "cv-nll"
#: The central score: worst-routing-tertile ECE with tertiles of routing-depth variance.
BAND_METRIC = "tertile_ece_depth_var"
#: Bandwidth rules compared in the bandwidth table and macros (the oracle labelled as such). Other
#: rows of bandwidth.csv (the CV curve, metric ``cv_nll``; the test-score ``grid``) feed figures.
BANDWIDTH_RULES = ("scott", "cv-nll", "oracle")
#: Capacity audit comparisons use the binary NLL of the recalibrated confidence.
CAPACITY_METRIC = "nll"


class TableSpec(NamedTuple):
    """A table: its jinja2 template (in paper/templates), the summary files it reads, its context."""

    template: str
    inputs: tuple[str, ...]
    context: Callable[[Path], dict[str, object]]


# ----------------------------------------------------------------------------- helpers


def _read(summary_dir: Path, name: str) -> pd.DataFrame:
    path = summary_dir / name
    if not path.is_file():
        raise ValueError(
            f"summary file {str(path)!r} is missing; run `python -m arcal.report.aggregate` first"
        )
    return pd.read_csv(path)


def variant_key(v: str) -> tuple[int, str]:
    """Sort key: baseline, block, full, then other variants by name."""
    return (VARIANT_ORDER.get(v, len(VARIANT_ORDER)), v)


def probe_key(p: str) -> tuple[int, str]:
    """Sort key: probes in the order of PROBE_ORDER, then others by name."""
    return (PROBE_ORDER.index(p) if p in PROBE_ORDER else len(PROBE_ORDER), p)


def _group_sort_key(g: tuple) -> tuple:
    dataset, substrate, variant = g[:3]
    return (dataset, substrate, *variant_key(variant), *g[3:])


def _stat(row: pd.Series | None) -> Stat | None:
    if row is None:
        return None
    return Stat(float(row["mean"]), float(row["std"]), int(row["n"]))


def _stats_lookup(df: pd.DataFrame, by: list[str], value: str = "value") -> dict[tuple, Stat]:
    """{group tuple: Stat over seeds} for the rows of ``df``."""
    if df.empty:
        return {}
    s = seed_stats(df, by, value)
    return {tuple(r[b] for b in by): _stat(r) for _, r in s.iterrows()}


def _label_rows(rows: list[dict[str, object]], keys: Sequence[str]) -> list[dict[str, object]]:
    """Mark the first row of each run of equal ``keys`` (labels shown once, a rule between groups)."""
    prev: tuple | None = None
    for i, r in enumerate(rows):
        cur = tuple(r[k] for k in keys)
        r["first"] = cur != prev
        r["new_block"] = i > 0 and cur != prev
        prev = cur
    return rows


def _groups(df: pd.DataFrame) -> list[tuple]:
    if df.empty:
        return []
    return sorted({tuple(x) for x in df[GROUP_KEYS].itertuples(index=False)}, key=_group_sort_key)


def _in_group(df: pd.DataFrame, g: tuple) -> pd.Series:
    return (df["dataset"] == g[0]) & (df["substrate"] == g[1]) & (df["variant"] == g[2])


def _group_probes(df: pd.DataFrame) -> list[tuple[tuple, str]]:
    """(group, probe) for every probe present in each group of ``df``, in table order."""
    return [
        (g, probe)
        for g in _groups(df)
        for probe in sorted(set(df.loc[_in_group(df, g), "probe"]), key=probe_key)
    ]


def _seeds(df: pd.DataFrame, g: tuple) -> int:
    return int(df.loc[_in_group(df, g), "seed"].nunique())


def _require(lookup: dict[tuple, Stat], key: tuple, what: str) -> Stat:
    if key not in lookup:
        raise ValueError(
            f"{what}: no value for {key}; the summary lacks it (check the per-cell CSVs)"
        )
    return lookup[key]


def _primary_probes(probes: pd.DataFrame) -> pd.DataFrame:
    """Probe rows under the primary bandwidth rule (non-NW probes have rule 'none').

    A bandwidth-dependent probe reported only under other rules would silently vanish from the
    table, so that is an error.
    """
    tuned = set(probes.loc[probes["bandwidth_rule"] != "none", "probe"])
    primary = set(probes.loc[probes["bandwidth_rule"] == PRIMARY_RULE, "probe"])
    if tuned - primary:
        raise ValueError(
            f"probes {sorted(tuned - primary)} have no rows with bandwidth_rule={PRIMARY_RULE!r}; "
            "the probe stage must report every NW probe under the primary rule"
        )
    return probes[probes["bandwidth_rule"].isin(["none", PRIMARY_RULE])]


def _band_position(x: Stat, band: Stat) -> str:
    """'below', 'within' or 'above' the seed band [m - s, m + s] of ``band``."""
    s = 0.0 if np.isnan(band.std) else band.std
    if x.mean < band.mean - s:
        return "below"
    if x.mean > band.mean + s:
        return "above"
    return "within"


# ----------------------------------------------------------------------------- contexts


def metrics_context(
    summary_dir: Path, columns: Sequence[str] = ("accuracy", "ece", "nll", "brier")
) -> dict[str, object]:
    """Rows (dataset, substrate, variant): seed mean +- std of raw-model test metrics."""
    df = _read(summary_dir, "metrics.csv")
    look = _stats_lookup(df, [*GROUP_KEYS, "metric"])
    rows = []
    for g in _groups(df):
        row: dict[str, object] = dict(zip(GROUP_KEYS, g), n_seeds=_seeds(df, g))
        for m in columns:
            row[m] = _require(look, (*g, m), f"metrics.csv metric {m!r}")
        rows.append(row)
    return {"rows": _label_rows(rows, ["dataset", "substrate"])}


def secondary_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant): MCE, classwise ECE and SmoothECE of the raw model."""
    return metrics_context(summary_dir, ("mce", "classwise_ece", "smooth_ece"))


#: Test methods in table order, with their labels (the default first; the paper's marked).
TEST_METHODS = {"residualised": "residualised (ours)", "within-bin": "within-bin (paper)"}


def _test_counts(df: pd.DataFrame) -> dict[str, int]:
    """Tests, tests that ran, rejections and BH rejections among those that ran."""
    ran = df[df["ran"].astype(bool)]
    return {
        "n_tests": len(df),
        "n_ran": len(ran),
        "n_not_run": len(df) - len(ran),
        "n_reject": int(ran["reject"].astype(bool).sum()),
        "n_reject_bh": int(ran["reject_bh"].astype(bool).sum()),
    }


def permutation_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant, feature, method): gaps, mean p of the weighted and the
    max gap, rejections among the tests that ran, and tests not run; totals per method."""
    df = _read(summary_dir, "permutation.csv")
    rows = []
    for key, sub in df.groupby([*GROUP_KEYS, "feature", "method"], sort=False):
        ran = sub[sub["ran"].astype(bool)]
        stat = (lambda col: _stat(seed_stats(ran, ["feature"], col).iloc[0]) if len(ran) else None)
        rows.append({
            **dict(zip([*GROUP_KEYS, "feature", "method"], key)),
            "label": TEST_METHODS.get(key[-1], key[-1]),
            "max_gap": stat("max_gap"),
            "weighted_gap": stat("weighted_gap"),
            "mean_p": float(ran["p_value"].mean()) if len(ran) else None,
            "mean_p_max": float(ran["p_value_max"].mean()) if len(ran) else None,
            **_test_counts(sub),
        })
    order = list(TEST_METHODS)
    rows.sort(key=lambda r: (*_group_sort_key((r["dataset"], r["substrate"], r["variant"],
                                               r["feature"])),
                             order.index(r["method"]) if r["method"] in order else len(order)))
    totals = [{"method": m, "label": TEST_METHODS.get(m, m), **_test_counts(df[df["method"] == m])}
              for m in sorted(df["method"].unique(), key=lambda m: (m not in order, m))]
    return {
        "rows": _label_rows(rows, GROUP_KEYS),
        "totals": totals,
        "alpha": float(df["bh_alpha"].iloc[0]) if not df.empty else float("nan"),
    }


def probes_context(
    summary_dir: Path,
    metrics: Sequence[str] = ("ece", "tertile_ece_depth_var", "tertile_ece_r_agg"),
) -> dict[str, object]:
    """Rows (dataset, substrate, variant, probe) under the primary rule; ar-condcal marked vs the nw-conf band."""
    df = _primary_probes(_read(summary_dir, "probes.csv"))
    look = _stats_lookup(df, [*GROUP_KEYS, "probe", "metric"])
    rows = []
    for g, probe in _group_probes(df):
        row: dict[str, object] = {**dict(zip(GROUP_KEYS, g)), "probe": probe}
        for m in metrics:
            row[m] = _require(look, (*g, probe, m), f"probes.csv {probe!r} metric {m!r}")
        band = look.get((*g, "nw-conf", BAND_METRIC))
        row["band"] = (
            _band_position(row[BAND_METRIC], band) if band and probe == "ar-condcal" else ""
        )
        rows.append(row)
    return {"rows": _label_rows(rows, GROUP_KEYS), "rule": PRIMARY_RULE}


#: Paired comparisons: AR-CondCal minus its confidence-only control, seed by seed.
PAIRED = ("ar-condcal", "nw-conf")
PAIRED_METRICS = (BAND_METRIC, "ece")


def paired_differences(probes: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (dataset, substrate, variant): the per-seed differences d_s = AR-CondCal - nw-conf
    on ``metric`` (same seed, same split), their mean, the 95% t interval of the mean
    (mean +- t_{0.975, n-1} s / sqrt(n); NaN with one seed) and the number of seeds with
    d_s < 0 (AR-CondCal better). Groups lacking either probe are left out."""
    from scipy.stats import t as student_t

    sel = probes[(probes["metric"] == metric) & probes["probe"].isin(PAIRED)]
    wide = sel.pivot_table(index=[*GROUP_KEYS, "seed"], columns="probe", values="value")
    if wide.empty or not set(PAIRED) <= set(wide.columns):
        return pd.DataFrame(columns=[*GROUP_KEYS, "n", "mean", "lo", "hi", "n_lower"])
    d = (wide[PAIRED[0]] - wide[PAIRED[1]]).dropna().rename("d").reset_index()
    rows = []
    for key, g in d.groupby(GROUP_KEYS, sort=False):
        n, mean = len(g), float(g["d"].mean())
        half = (float(student_t.ppf(0.975, n - 1) * g["d"].std(ddof=1) / np.sqrt(n))
                if n > 1 else float("nan"))
        rows.append({**dict(zip(GROUP_KEYS, key)), "n": n, "mean": mean, "lo": mean - half,
                     "hi": mean + half, "n_lower": int((g["d"] < 0).sum())})
    rows.sort(key=lambda r: _group_sort_key((r["dataset"], r["substrate"], r["variant"])))
    return pd.DataFrame(rows)


def paired_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant): the paired seed-level comparison of AR-CondCal with
    nw-conf under the primary bandwidth rule, one column group per metric in PAIRED_METRICS."""
    probes = _primary_probes(_read(summary_dir, "probes.csv"))
    per_metric = {m: paired_differences(probes, m) for m in PAIRED_METRICS}
    groups = sorted({tuple(r) for df in per_metric.values()
                     for r in df[GROUP_KEYS].itertuples(index=False)}, key=_group_sort_key)
    rows = []
    for g in groups:
        cells = []
        for m in PAIRED_METRICS:
            df = per_metric[m]
            hit = df[(df[GROUP_KEYS] == pd.Series(dict(zip(GROUP_KEYS, g)))).all(axis=1)]
            cells.append(hit.iloc[0].to_dict() if len(hit) else None)
        n = next((c["n"] for c in cells if c), 0)
        rows.append({**dict(zip(GROUP_KEYS, g)), "n": n, "metrics": cells})
    return {"rows": _label_rows(rows, ["dataset", "substrate"]), "rule": PRIMARY_RULE}


def bandwidth_context(summary_dir: Path, metric: str = BAND_METRIC) -> dict[str, object]:
    """Rows (dataset, substrate, variant, probe): ``metric`` under Scott multiples, CV-NLL and the oracle."""
    df = _read(summary_dir, "bandwidth.csv")
    df = df[df["metric"] == metric]
    scott = df[df["rule"] == "scott"]
    multipliers = sorted(float(m) for m in scott["multiplier"].unique())
    s_look = _stats_lookup(scott, [*GROUP_KEYS, "probe", "multiplier"])
    r_look = _stats_lookup(df[df["rule"] != "scott"], [*GROUP_KEYS, "probe", "rule"])
    m_look = _stats_lookup(df[df["rule"] != "scott"], [*GROUP_KEYS, "probe", "rule"], "multiplier")
    rows = []
    for g, probe in _group_probes(df):
        rows.append(
            {
                **dict(zip(GROUP_KEYS, g)),
                "probe": probe,
                "scott": [s_look.get((*g, probe, m)) for m in multipliers],
                "cv": r_look.get((*g, probe, "cv-nll")),
                "cv_mult": m_look.get((*g, probe, "cv-nll")),
                "oracle": r_look.get((*g, probe, "oracle")),
                "oracle_mult": m_look.get((*g, probe, "oracle")),
            }
        )
    return {
        "rows": _label_rows(rows, GROUP_KEYS),
        "multipliers": [fmt_g(m) for m in multipliers],
        "metric": metric,
    }


def capacity_context(
    summary_dir: Path, metrics: Sequence[str] = ("ece", "nll", "brier")
) -> dict[str, object]:
    """Rows (dataset, substrate, variant, probe) of the capacity audit with parameter counts."""
    df = _read(summary_dir, "capacity.csv")
    look = _stats_lookup(df, [*GROUP_KEYS, "probe", "metric"])
    rows = []
    for g in _groups(df):
        sub = df[_in_group(df, g)]
        for probe in sorted(set(sub["probe"]), key=probe_key):
            n = sub.loc[sub["probe"] == probe, "n_params"].astype(int)
            params = f"{n.min():,}" if n.min() == n.max() else f"{n.min():,}--{n.max():,}"
            row: dict[str, object] = {
                **dict(zip(GROUP_KEYS, g)),
                "probe": probe,
                "params": params.replace(",", r"\,"),
            }
            for m in metrics:
                row[m] = _require(look, (*g, probe, m), f"capacity.csv {probe!r} metric {m!r}")
            rows.append(row)
    return {"rows": _label_rows(rows, GROUP_KEYS)}


def _names(values: Sequence[str]) -> str:
    return ", ".join(display_name(v) for v in values)


def _range(values: pd.Series) -> str:
    if values.empty:
        return "--"
    lo, hi = int(values.min()), int(values.max())
    return f"{lo:,}".replace(",", r"\,") if lo == hi else f"{lo:,}--{hi:,}".replace(",", r"\,")


def _mean_metric(df: pd.DataFrame, metric: str, mask: pd.Series | None = None) -> str:
    sel = df[df["metric"] == metric] if mask is None else df[(df["metric"] == metric) & mask]
    return fmt_num(float(sel["value"].mean()) if not sel.empty else float("nan"), 3)


def numbers_context(summary_dir: Path) -> dict[str, object]:
    """Every number the prose of paper/main.tex uses, as (macro name, LaTeX value, description)."""
    cells = _read(summary_dir, "cells.csv")
    metrics = _read(summary_dir, "metrics.csv")
    perm = _read(summary_dir, "permutation.csv")
    probes = _primary_probes(_read(summary_dir, "probes.csv"))
    bw = _read(summary_dir, "bandwidth.csv")
    cap = _read(summary_dir, "capacity.csv")

    ar = cells["variant"] != BASELINE
    per_group_seeds = cells.groupby(GROUP_KEYS)["seed"].nunique()
    m = [
        ("NumDatasets", str(cells["dataset"].nunique()), "datasets in the grid"),
        ("NumSubstrates", str(cells["substrate"].nunique()), "substrates in the grid"),
        (
            "NumVariants",
            str(cells["variant"].nunique()),
            "variants in the grid (baseline included)",
        ),
        ("NumSeeds", _range(per_group_seeds), "seeds per dataset/substrate/variant"),
        ("NumRuns", str(len(cells)), "trained models (cells x seeds)"),
        ("NumARRuns", str(int(ar.sum())), "trained AttnRes models"),
        ("DatasetList", _names(sorted(cells["dataset"].unique())), "datasets"),
        ("SubstrateList", _names(sorted(cells["substrate"].unique())), "substrates"),
        (
            "VariantList",
            _names(sorted(cells["variant"].unique(), key=lambda v: (VARIANT_ORDER.get(v, 9), v))),
            "variants",
        ),
        ("NumTestExamples", _range(cells["n_test"]), "test examples per model"),
        ("MeanAccuracy", _mean_metric(metrics, "accuracy"), "mean test accuracy over all models"),
        (
            "MeanAccuracyBaseline",
            _mean_metric(metrics, "accuracy", metrics["variant"] == BASELINE),
            "baseline models",
        ),
        (
            "MeanAccuracyAR",
            _mean_metric(metrics, "accuracy", metrics["variant"] != BASELINE),
            "AttnRes models",
        ),
        ("MeanRawECE", _mean_metric(metrics, "ece"), "mean raw test ECE over all models"),
    ]
    n_pairs = perm[[*GROUP_KEYS, "seed", "feature"]].drop_duplicates()
    m += [
        ("NumTests", str(len(n_pairs)), "(model, routing feature) pairs tested by each test"),
        ("NumFeatures", str(perm["feature"].nunique()), "routing features tested"),
        ("NumPerm", _range(perm["n_perm"]) if not perm.empty else "--", "permutations per test"),
        ("BHAlpha", fmt_g(float(perm["bh_alpha"].iloc[0])) if not perm.empty else "--", "BH level"),
    ]
    for method, suffix in (("residualised", "Robust"), ("within-bin", "Paper")):
        sub = perm[perm["method"] == method]
        counts = _test_counts(sub)
        ran = sub[sub["ran"].astype(bool)]
        present = not sub.empty
        m += [
            (f"NumTestsRan{suffix}", str(counts["n_ran"]) if present else "--",
             f"{method} tests that ran"),
            (f"NumTestsNotRun{suffix}", str(counts["n_not_run"]) if present else "--",
             f"{method} tests that could not run (no bin of min_bin examples)"),
            (f"NumRejections{suffix}", str(counts["n_reject"]) if present else "--",
             f"{method} tests rejecting at their level"),
            (f"NumRejectionsBH{suffix}", str(counts["n_reject_bh"]) if present else "--",
             f"{method} Benjamini-Hochberg rejections"),
            (f"MinPValue{suffix}", fmt_num(float(ran["p_value"].min()), 4) if len(ran) else "--",
             f"smallest {method} p-value"),
        ]
    look = _stats_lookup(probes, [*GROUP_KEYS, "probe", "metric"])
    pos = [
        _band_position(look[(*g, "ar-condcal", BAND_METRIC)], look[(*g, "nw-conf", BAND_METRIC)])
        for g in _groups(probes)
        if (*g, "ar-condcal", BAND_METRIC) in look and (*g, "nw-conf", BAND_METRIC) in look
    ]
    m += [
        (
            "NumProbeGroups",
            str(len(pos)),
            "AttnRes dataset/substrate/variant groups with both NW probes",
        ),
        (
            "CondCalWithinBand",
            str(pos.count("within")),
            "groups with AR-CondCal inside the nw-conf seed band",
        ),
        (
            "CondCalBelowBand",
            str(pos.count("below")),
            "groups with AR-CondCal below (better than) the band",
        ),
        (
            "CondCalAboveBand",
            str(pos.count("above")),
            "groups with AR-CondCal above (worse than) the band",
        ),
        ("PrimaryRule", tex_escape(PRIMARY_RULE), "bandwidth rule of the probe table"),
    ]
    paired = paired_differences(probes, BAND_METRIC)
    with_ci = paired[paired["n"] > 1]
    m += [
        ("PairedGroups", str(len(with_ci)), "groups with a paired t interval (>= 2 seeds)"),
        ("PairedCIContainsZero", str(int(((with_ci["lo"] <= 0) & (with_ci["hi"] >= 0)).sum())),
         "groups whose 95% interval of AR-CondCal - nw-conf contains zero"),
        ("PairedCIBelowZero", str(int((with_ci["hi"] < 0).sum())),
         "groups whose interval lies below zero (AR-CondCal better)"),
        ("PairedCIAboveZero", str(int((with_ci["lo"] > 0).sum())),
         "groups whose interval lies above zero (AR-CondCal worse)"),
        ("PairedMaxHalfWidth",
         fmt_num(float(((with_ci["hi"] - with_ci["lo"]) / 2).max()), 3) if len(with_ci) else "--",
         "widest half-width of those intervals"),
    ]
    bwm = bw[(bw["metric"] == BAND_METRIC) & bw["rule"].isin(BANDWIDTH_RULES)].copy()
    bwm["config"] = np.where(
        bwm["rule"] == "scott", "scott:" + bwm["multiplier"].astype(str), bwm["rule"]
    )
    blook = _stats_lookup(bwm, [*GROUP_KEYS, "config", "probe"])
    bpos = [
        _band_position(blook[(*k[:4], "ar-condcal")], blook[(*k[:4], "nw-conf")])
        for k in sorted(blook)
        if k[4] == "ar-condcal" and (*k[:4], "nw-conf") in blook
    ]
    m += [
        ("NumBandwidthConfigs", str(len(bpos)), "group x bandwidth-rule configurations compared"),
        (
            "CondCalBelowBandConfigs",
            str(bpos.count("below")),
            "configurations with AR-CondCal below the band",
        ),
        (
            "CondCalWithinBandConfigs",
            str(bpos.count("within")),
            "configurations with AR-CondCal inside the band",
        ),
    ]
    clook = _stats_lookup(cap[cap["metric"] == CAPACITY_METRIC], [*GROUP_KEYS, "probe"])
    cgroups = [g for g in _groups(cap) if all((*g, p) in clook for p in CAPACITY_PROBES)]

    def beats(a: str, b: str) -> str:
        return str(sum(_band_position(clook[(*g, a)], clook[(*g, b)]) == "below" for g in cgroups))

    m += [
        ("NumCapacityGroups", str(len(cgroups)), "groups with all four capacity-audit probes"),
        (
            "MlpFullBeatsLinear",
            beats("mlp-full", "linear-conf"),
            "mlp-full NLL below the linear-conf band",
        ),
        (
            "MlpFullBeatsMlpConf",
            beats("mlp-full", "mlp-conf"),
            "mlp-full NLL below the mlp-conf band",
        ),
        (
            "MlpFullBeatsShuffled",
            beats("mlp-full", "mlp-shuffled"),
            "mlp-full NLL below the mlp-shuffled band",
        ),
    ]
    for name, _, _ in m:
        if not name.isalpha():
            raise ValueError(f"macro name {name!r} must be letters only")
    return {"macros": [{"name": n, "value": v, "doc": d} for n, v, d in m]}


# ----------------------------------------------------------------------------- registry and CLI

def pooled_planted(df: pd.DataFrame) -> pd.DataFrame:
    """Planted-control rates pooled over seeds per (dataset, substrate, variant, feature, delta,
    method): rejections k of the n repetitions whose test ran, with a Clopper-Pearson 95%
    interval; achieved effect and ECE gain as Stats over seeds."""
    from scipy.stats import binomtest

    rows = []
    keys = [*GROUP_KEYS, "feature", "delta", "method"]
    for key, sub in df.groupby(keys, sort=False):
        n = int(sub["n_ran"].sum())
        k = int(round(float((sub["reject_rate"].fillna(0.0) * sub["n_ran"]).sum())))
        ci = binomtest(k, n).proportion_ci(0.95, method="exact") if n else None
        one = sub.assign(g=0)
        rows.append({**dict(zip(keys, key)), "n": n, "k": k,
                     "not_run": int(sub["n_rep"].sum()) - n,
                     "rate": k / n if n else float("nan"),
                     "lo": ci.low if ci else float("nan"), "hi": ci.high if ci else float("nan"),
                     "achieved": _stat(seed_stats(one, ["g"], "achieved_effect").iloc[0]),
                     "gain": _stat(seed_stats(one, ["g"], "ece_gain_mean").iloc[0])})
    order = list(TEST_METHODS)
    rows.sort(key=lambda r: (*_group_sort_key((r["dataset"], r["substrate"], r["variant"])),
                             r["feature"], r["delta"],
                             order.index(r["method"]) if r["method"] in order else len(order)))
    return pd.DataFrame(rows)


#: Power a planted effect must reach to count as detected.
PLANTED_POWER = 0.8


def planted_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant, feature, delta) of the planted control with each test's
    rejection rate, and per cell and test the smallest delta > 0 detected with power >=
    PLANTED_POWER (None where none is) and the largest rate at delta = 0 (the test's size)."""
    pooled = pooled_planted(_read(summary_dir, "planted.csv"))
    if pooled.empty:
        return {"rows": [], "detected": [], "power": PLANTED_POWER, "methods": [], "size": []}
    methods = [m for m in TEST_METHODS if m in set(pooled["method"])]
    keys = [*GROUP_KEYS, "feature", "delta"]
    rows = []
    for key, sub in pooled.groupby(keys, sort=False):
        by = {r["method"]: r for r in sub.to_dict("records")}
        first = next(iter(by.values()))
        rows.append({**dict(zip(keys, key)), "achieved": first["achieved"],
                     "gain": first["gain"], "tests": [by.get(m) for m in methods]})
    detected = []
    for key, sub in pooled.groupby([*GROUP_KEYS, "feature", "method"], sort=False):
        hits = sub[(sub["delta"] > 0) & (sub["rate"] >= PLANTED_POWER)]
        best = hits.loc[hits["delta"].idxmin()] if len(hits) else None
        detected.append({**dict(zip([*GROUP_KEYS, "feature", "method"], key)),
                         "label": TEST_METHODS.get(key[-1], key[-1]),
                         "min_delta": float(best["delta"]) if best is not None else None,
                         "achieved": best["achieved"] if best is not None else None})
    size = [{"method": m, "label": TEST_METHODS[m],
             "max": float(pooled[(pooled["delta"] == 0) & (pooled["method"] == m)]["rate"].max())}
            for m in methods]
    return {
        "rows": _label_rows(rows, GROUP_KEYS),
        "detected": detected,
        "power": PLANTED_POWER,
        "methods": [TEST_METHODS[m] for m in methods],
        "size": size,
    }


def temporal_context(summary_dir: Path, metrics: Sequence[str] = ("accuracy", "ece", "nll")) -> dict[str, object]:
    """Rows (dataset, substrate, variant): final model against the snapshot ensemble on each
    metric (mean +- std over seeds), and the ensemble's mean permutation p per feature."""
    df = _read(summary_dir, "temporal.csv")
    look = _stats_lookup(df, [*GROUP_KEYS, "model", "quantity"])
    features = sorted(q.removeprefix("p_") for q in df["quantity"].unique() if q.startswith("p_"))
    rows = []
    for g in _groups(df):
        rows.append({
            **dict(zip(GROUP_KEYS, g)),
            "n_seeds": _seeds(df, g),
            "final": [look.get((*g, "final", m)) for m in metrics],
            "ensemble": [look.get((*g, "ensemble", m)) for m in metrics],
            "p": [look[(*g, "ensemble", f"p_{f}")].mean if (*g, "ensemble", f"p_{f}") in look else None
                  for f in features],
        })
    return {"rows": _label_rows(rows, ["dataset", "substrate"]), "metrics": list(metrics),
            "features": features}


def sources_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant): how many sources the routed consumers see.

    Read from the ``n_sources`` column of the routing profiles, which must agree over seeds. A
    stack (the ViT, or one Swin stage) ends with its output mixer, which sees the embedding (or
    stage input) and every block of the stack, so blocks per stack = its sources - 1 (for Full,
    every sub-layer is a block). Each stack's first mixer has a single source and is in no
    routing summary, so it is not counted here.
    """
    df = _read(summary_dir, "routing_profiles.csv")
    consumers = df.drop_duplicates([*GROUP_KEYS, "seed", "consumer_index"])
    rows = []
    for g in _groups(consumers):
        cell = consumers[_in_group(consumers, g)].sort_values("consumer_index")
        layouts = {tuple(zip(s["consumer"], s["n_sources"])) for _, s in cell.groupby("seed")}
        if len(layouts) != 1:
            raise ValueError(
                f"routing_profiles.csv: the seeds of {'/'.join(g)} route over different sources; "
                "were they trained with one config?"
            )
        (layout,) = layouts
        n = np.array([k for _, k in layout])
        rows.append({
            **dict(zip(GROUP_KEYS, g)),
            "n_consumers": len(n),
            "blocks": "-".join(str(k - 1) for name, k in layout if str(name).split(".")[-1] == "out"),
            "min": int(n.min()), "max": int(n.max()), "mean": float(n.mean()), "two": int((n == 2).sum()),
        })
    return {"rows": _label_rows(rows, ["dataset", "substrate"])}


#: The baselines' attention audit (arcal.audit.attention): its probes, capacity probes and score.
ATTENTION_PROBES = ("nw-conf", "nw-attn_entropy")
ATTENTION_CAPACITY = ("mlp-conf@A", "mlp-full@A", "mlp-shuffled@A")
ATTENTION_METRIC = "tertile_ece_attn_entropy"


def attention_context(summary_dir: Path) -> dict[str, object]:
    """The baselines' attention audit: per (dataset, substrate) and test, the weighted gap of
    attention entropy, the mean p and rejections among the tests that ran; per (dataset,
    substrate), the worst-tertile ECE (tertiles of attention entropy) of nw-conf and
    nw-attn_entropy with the band position of the latter, and the capacity audit's binary NLL on
    the per-layer attention entropies."""
    perm = _read(summary_dir, "attention_permutation.csv")
    probes = _read(summary_dir, "attention_probes.csv")
    probes = _primary_probes(probes.assign(bandwidth_rule=probes["bandwidth_rule"].fillna("none")))
    tests = []
    for key, sub in perm.groupby(["dataset", "substrate", "method"], sort=False):
        ran = sub[sub["ran"].astype(bool)]
        tests.append({
            "dataset": key[0], "substrate": key[1], "method": key[2],
            "label": TEST_METHODS.get(key[2], key[2]),
            "weighted_gap": _stat(seed_stats(ran, ["method"], "weighted_gap").iloc[0]) if len(ran) else None,
            "mean_p": float(ran["p_value"].mean()) if len(ran) else None,
            "n_reject": int(ran["reject"].astype(bool).sum()), "n_ran": len(ran),
            "n_not_run": len(sub) - len(ran),
        })
    order = list(TEST_METHODS)
    tests.sort(key=lambda r: (r["dataset"], r["substrate"],
                              order.index(r["method"]) if r["method"] in order else len(order)))
    look = _stats_lookup(probes, ["dataset", "substrate", "probe", "metric"])
    rows = []
    for d, sub in sorted({(r.dataset, r.substrate) for r in probes.itertuples()}):
        row: dict[str, object] = {"dataset": d, "substrate": sub}
        for probe, name in zip(ATTENTION_PROBES, ("conf", "attn")):
            row[f"worst_{name}"] = look.get((d, sub, probe, ATTENTION_METRIC))
        row["band"] = (_band_position(row["worst_attn"], row["worst_conf"])
                       if row["worst_attn"] and row["worst_conf"] else "")
        row["capacity"] = [look.get((d, sub, p, CAPACITY_METRIC)) for p in ATTENTION_CAPACITY]
        rows.append(row)
    return {"tests": _label_rows(tests, ["dataset", "substrate"]),
            "rows": _label_rows(rows, ["dataset"]), "rule": PRIMARY_RULE}


TABLES: dict[str, TableSpec] = {
    "metrics": TableSpec("metrics.tex.j2", ("metrics.csv",), metrics_context),
    "permutation": TableSpec("permutation.tex.j2", ("permutation.csv",), permutation_context),
    "probes": TableSpec("probes.tex.j2", ("probes.csv",), probes_context),
    "secondary": TableSpec("secondary.tex.j2", ("metrics.csv",), secondary_context),
    "bandwidth": TableSpec("bandwidth.tex.j2", ("bandwidth.csv",), bandwidth_context),
    "capacity": TableSpec("capacity.tex.j2", ("capacity.csv",), capacity_context),
    "paired": TableSpec("paired.tex.j2", ("probes.csv",), paired_context),
    "planted": TableSpec("planted.tex.j2", ("planted.csv",), planted_context),
    "planted_text": TableSpec("planted_text.tex.j2", ("planted.csv",), planted_context),
    "temporal": TableSpec("temporal.tex.j2", ("temporal.csv",), temporal_context),
    "sources": TableSpec("sources.tex.j2", ("routing_profiles.csv",), sources_context),
    "attention": TableSpec("attention.tex.j2",
                           ("attention_permutation.csv", "attention_probes.csv"),
                           attention_context),
    "numbers": TableSpec(
        "numbers.tex.j2",
        (
            "cells.csv",
            "metrics.csv",
            "permutation.csv",
            "probes.csv",
            "bandwidth.csv",
            "capacity.csv",
        ),
        numbers_context,
    ),
}


def render_string(
    name: str,
    summary_dir: str | os.PathLike[str],
    templates_dir: str | os.PathLike[str] | None = None,
) -> str:
    """Render table ``name`` of ``TABLES`` from the summary folder and return the LaTeX text."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; choose one of {sorted(TABLES)}")
    spec = TABLES[name]
    env = make_env(templates_dir if templates_dir is not None else DEFAULT_TEMPLATES)
    return env.get_template(spec.template).render(**spec.context(Path(summary_dir)))


def render_table(
    name: str,
    summary_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    templates_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Render table ``name`` and write it atomically to ``out_path``; returns the path."""
    atomic_write_text(out_path, render_string(name, summary_dir, templates_dir))
    return Path(out_path)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m arcal.report.tables NAME --summary results/summary --out paper/tables/NAME.tex``."""
    ap = argparse.ArgumentParser(
        prog="python -m arcal.report.tables", description="Render one LaTeX table."
    )
    ap.add_argument("name", choices=sorted(TABLES))
    ap.add_argument(
        "--summary", required=True, help="summary folder written by arcal.report.aggregate"
    )
    ap.add_argument("--out", required=True, help="output .tex path")
    ap.add_argument(
        "--templates", default=None, help=f"template folder (default {DEFAULT_TEMPLATES})"
    )
    args = ap.parse_args(argv)
    render_table(args.name, args.summary, args.out, args.templates)


if __name__ == "__main__":
    main()
