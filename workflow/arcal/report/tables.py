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


def permutation_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant, feature): gaps, mean p, rejections; totals over all tests."""
    df = _read(summary_dir, "permutation.csv")
    rows = []
    if not df.empty:
        for key, sub in df.groupby([*GROUP_KEYS, "feature"], sort=False):
            rows.append(
                {
                    **dict(zip([*GROUP_KEYS, "feature"], key)),
                    "n_seeds": int(sub["seed"].nunique()),
                    "max_gap": _stat(seed_stats(sub, ["feature"], "max_gap").iloc[0]),
                    "weighted_gap": _stat(seed_stats(sub, ["feature"], "weighted_gap").iloc[0]),
                    "mean_p": float(sub["p_value"].mean()),
                    "n_tests": len(sub),
                    "n_reject": int(sub["reject"].astype(bool).sum()),
                    "n_reject_bh": int(sub["reject_bh"].astype(bool).sum()),
                }
            )
        rows.sort(
            key=lambda r: _group_sort_key(
                (r["dataset"], r["substrate"], r["variant"], r["feature"])
            )
        )
    alpha = float(df["bh_alpha"].iloc[0]) if not df.empty else float("nan")
    return {
        "rows": _label_rows(rows, ["dataset", "substrate", "variant"]),
        "n_tests": len(df),
        "n_reject": int(df["reject"].astype(bool).sum()) if not df.empty else 0,
        "n_reject_bh": int(df["reject_bh"].astype(bool).sum()) if not df.empty else 0,
        "alpha": alpha,
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
    n_rej = int(perm["reject"].astype(bool).sum()) if not perm.empty else 0
    m += [
        ("NumTests", str(len(perm)), "permutation tests (cell x variant x seed x feature)"),
        ("NumFeatures", str(perm["feature"].nunique()), "routing features tested"),
        ("NumPerm", _range(perm["n_perm"]) if not perm.empty else "--", "permutations per test"),
        ("NumRejections", str(n_rej), "tests rejecting at their level"),
        (
            "NumRejectionsBH",
            str(int(perm["reject_bh"].astype(bool).sum()) if not perm.empty else 0),
            "Benjamini-Hochberg rejections over all tests",
        ),
        ("BHAlpha", fmt_g(float(perm["bh_alpha"].iloc[0])) if not perm.empty else "--", "BH level"),
        (
            "MinPValue",
            fmt_num(float(perm["p_value"].min()), 4) if not perm.empty else "--",
            "smallest p-value",
        ),
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
    """Planted-control rates pooled over seeds per (dataset, substrate, variant, feature, delta):
    rejections k of n with a Clopper-Pearson 95% interval; ECE gain as a Stat over seeds."""
    from scipy.stats import binomtest

    rows = []
    keys = [*GROUP_KEYS, "feature", "delta"]
    for key, sub in df.groupby(keys, sort=False):
        n = int(sub["n_rep"].sum())
        k = int(round(float((sub["reject_rate"] * sub["n_rep"]).sum())))
        ci = binomtest(k, n).proportion_ci(0.95, method="exact")
        gain = seed_stats(sub.assign(g=0), ["g"], "ece_gain_mean").iloc[0]
        rows.append({**dict(zip(keys, key)), "n": n, "k": k, "rate": k / n, "lo": ci.low,
                     "hi": ci.high, "gain": _stat(gain)})
    rows.sort(key=lambda r: (*_group_sort_key((r["dataset"], r["substrate"], r["variant"])),
                             r["feature"], r["delta"]))
    return pd.DataFrame(rows)


#: Power a planted effect must reach to count as detected.
PLANTED_POWER = 0.8


def planted_context(summary_dir: Path) -> dict[str, object]:
    """Rows (dataset, substrate, variant, feature, delta) of the planted control, and per cell the
    smallest delta > 0 detected with power >= PLANTED_POWER (None where none is)."""
    pooled = pooled_planted(_read(summary_dir, "planted.csv"))
    rows = pooled.to_dict("records") if not pooled.empty else []
    detected = []
    for key, sub in (pooled.groupby([*GROUP_KEYS, "feature"], sort=False) if rows else []):
        hits = sub[(sub["delta"] > 0) & (sub["rate"] >= PLANTED_POWER)]
        detected.append({**dict(zip([*GROUP_KEYS, "feature"], key)),
                         "min_delta": float(hits["delta"].min()) if len(hits) else None})
    size = pooled[pooled["delta"] == 0] if rows else pooled
    return {
        "rows": _label_rows(rows, ["dataset", "substrate", "variant"]),
        "detected": detected,
        "power": PLANTED_POWER,
        "size_max": float(size["rate"].max()) if len(size) else float("nan"),
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


TABLES: dict[str, TableSpec] = {
    "metrics": TableSpec("metrics.tex.j2", ("metrics.csv",), metrics_context),
    "permutation": TableSpec("permutation.tex.j2", ("permutation.csv",), permutation_context),
    "probes": TableSpec("probes.tex.j2", ("probes.csv",), probes_context),
    "secondary": TableSpec("secondary.tex.j2", ("metrics.csv",), secondary_context),
    "bandwidth": TableSpec("bandwidth.tex.j2", ("bandwidth.csv",), bandwidth_context),
    "capacity": TableSpec("capacity.tex.j2", ("capacity.csv",), capacity_context),
    "planted": TableSpec("planted.tex.j2", ("planted.csv",), planted_context),
    "planted_text": TableSpec("planted_text.tex.j2", ("planted.csv",), planted_context),
    "temporal": TableSpec("temporal.tex.j2", ("temporal.csv",), temporal_context),
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
