"""Figures rendered from the summary folder (matplotlib, one shared style, deterministic PDFs).

Each figure is a named ``FigureSpec`` in ``FIGURES``: a function ``summary_dir -> Figure`` and the
summary files it reads (Snakemake inputs; add ``STYLE_FILE`` too so a style change re-renders).
Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, Agg canvas) under the style
``arcal.mplstyle``, and saved with fixed metadata (no CreationDate), so two renders of the same
inputs are byte-identical. Panels adapt to the grid: rows are (dataset, substrate) pairs present in
the summary, columns the variants (and features) present; a grid without AttnRes models gives a
one-panel figure that says so.
"""

from __future__ import annotations

import argparse
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from arcal.io import atomic_write_bytes
from arcal.report.aggregate import BASELINE, GROUP_KEYS, load_nulls
from arcal.report.latex import PLAIN_NAMES
from arcal.report.tables import BAND_METRIC, pooled_planted, probe_key, variant_key

STYLE_FILE = Path(__file__).with_name("arcal.mplstyle")
#: Fixed PDF metadata: no CreationDate, so repeated saves are byte-identical.
PDF_METADATA = {
    "CreationDate": None,
    "ModDate": None,
    "Creator": "arcal.report.figures",
    "Producer": None,
}
#: Reliability-diagram bins with fewer examples than this are not drawn (too noisy to read).
MIN_BIN_N = 5
PANEL_W, PANEL_H = 1.6, 1.45

#: Figure labels that differ from the table names (variants and routing features).
_FIGURE_NAMES = {
    "block": "Block AttnRes",
    "full": "Full AttnRes",
    "r_agg": "routing entropy $r_{agg}$",
    "depth_var": "depth variance",
    "all": "all examples",
}
_VARIANT_COLORS = {"baseline": "0.45", "block": "#0072B2", "full": "#D55E00"}
_TERTILE_COLORS = {1: "#9ecae1", 2: "#4292c6", 3: "#08306b"}


class FigureSpec(NamedTuple):
    """A figure: the function drawing it from the summary folder and the summary files it reads."""

    function: Callable[[Path], Figure]
    inputs: tuple[str, ...]


def _name(x: object) -> str:
    """Plot label of a dataset/substrate/variant/feature (raw name if not registered)."""
    key = str(x)
    return _FIGURE_NAMES.get(key, PLAIN_NAMES.get(key, key.replace("$", r"\$")))


def _read(summary_dir: Path, name: str) -> pd.DataFrame:
    path = summary_dir / name
    if not path.is_file():
        raise ValueError(
            f"summary file {str(path)!r} is missing; run `python -m arcal.report.aggregate` first"
        )
    return pd.read_csv(path)


def _variant_color(v: str, i: int) -> str:
    return _VARIANT_COLORS.get(v, f"C{i % 8}")


def _pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(
        {(str(d), str(s)) for d, s in df[["dataset", "substrate"]].itertuples(index=False)}
    )


def _grid(
    n_rows: int, n_cols: int, w: float = PANEL_W, h: float = PANEL_H
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(max(w * n_cols, 2.4), h * n_rows + 0.35))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def _empty(message: str) -> Figure:
    fig = Figure(figsize=(3.2, 1.2))
    ax = fig.subplots()
    ax.set_axis_off()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    return fig


def _row_label(ax: Axes, pair: tuple[str, str], ylabel: str) -> None:
    ax.set_ylabel(f"{_name(pair[0])}\n{_name(pair[1])}\n{ylabel}")


def _sel(df: pd.DataFrame, **keys: object) -> pd.DataFrame:
    mask = np.ones(len(df), dtype=bool)
    for k, v in keys.items():
        mask &= (df[k] == v).to_numpy()
    return df[mask]


Panel = tuple[Axes, tuple[str, str], dict[str, str], pd.DataFrame]


def _panels(
    df: pd.DataFrame,
    cols: Sequence[dict[str, str]],
    titles: Sequence[str],
    ylabel: str,
    xlabel: str,
    w: float = PANEL_W,
    h: float = PANEL_H,
    xlabel_size: float | None = None,
) -> tuple[Figure, np.ndarray, list[Panel]]:
    """The layout most figures share: one row per (dataset, substrate) of `df`, one column per
    selection in `cols` (e.g. {"variant": "block"}), titles on top, row labels on the left and
    x labels at the bottom. Returns the figure, its axes and, for each panel with rows in `df`,
    (axes, (dataset, substrate), selection, rows); panels without rows are hidden."""
    pairs = _pairs(df)
    fig, axes = _grid(len(pairs), len(cols), w=w, h=h)
    panels = []
    for i, pair in enumerate(pairs):
        for j, (col, title) in enumerate(zip(cols, titles, strict=True)):
            ax = axes[i, j]
            rows = _sel(df, dataset=pair[0], substrate=pair[1], **col)
            if rows.empty:
                ax.set_axis_off()
                continue
            if i == 0:
                ax.set_title(title)
            if j == 0:
                _row_label(ax, pair, ylabel)
            if i == len(pairs) - 1:
                ax.set_xlabel(xlabel, fontsize=xlabel_size)
            panels.append((ax, pair, col, rows))
    return fig, axes, panels


def _variant_feature_columns(df: pd.DataFrame) -> tuple[list[dict[str, str]], list[str]]:
    """One column per (variant, feature) of `df`, in variant order, and their titles."""
    cols = sorted(
        {(str(v), str(f)) for v, f in df[["variant", "feature"]].itertuples(index=False)},
        key=lambda c: (variant_key(c[0]), c[1]),
    )
    return (
        [{"variant": v, "feature": f} for v, f in cols],
        [f"{_name(v)}\n{_name(f)}" for v, f in cols],
    )


def _variant_columns(df: pd.DataFrame) -> tuple[list[dict[str, str]], list[str]]:
    """One column per variant of `df`, in variant order, and their titles."""
    variants = sorted(df["variant"].unique(), key=variant_key)
    return [{"variant": v} for v in variants], [_name(v) for v in variants]


# ----------------------------------------------------------------------------- figures


def reliability(summary_dir: Path) -> Figure:
    """Reliability diagrams per routing tertile, pooled over seeds (bins with >= MIN_BIN_N examples).

    Panels: rows (dataset, substrate), columns (variant, feature); in each panel accuracy against
    mean confidence per confidence bin for the low, middle and high tertile of the feature.
    Without AttnRes models, the all-examples diagram of each variant is shown instead.
    """
    df = _read(summary_dir, "reliability.csv")
    if df.empty:
        return _empty("No models in this grid.")
    routed = df[df["tertile"] > 0]
    use = routed if not routed.empty else df
    n_bins = int(use["bin"].max()) + 1
    fig, axes, panels = _panels(
        use, *_variant_feature_columns(use), "accuracy", f"confidence ({n_bins} bins)"
    )
    for ax, _, _, sub in panels:
        ax.plot([0, 1], [0, 1], ls="--", lw=0.6, color="0.6")
        for t, part in sub.groupby("tertile", sort=True):
            part = part[part["n"] >= MIN_BIN_N].sort_values("bin")
            label = "all" if t == 0 else ("low", "mid", "high")[int(t) - 1] + " tertile"
            ax.plot(
                part["conf"],
                part["acc"],
                marker="o",
                color=_TERTILE_COLORS.get(int(t), "k"),
                label=label,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
    axes[0, 0].legend(loc="upper left")
    return fig


#: The test whose null distributions the figure shows (the default; the paper's are in the npz).
NULLS_METHOD = "residualised"


def permutation_nulls(summary_dir: Path) -> Figure:
    """Permutation nulls of the weighted gap for the default (residualised) test, one step
    histogram per seed, with the observed statistic as a vertical line of the same colour and the
    p-value in the legend. Tests that did not run have no null and are left out."""
    perm = _read(summary_dir, "permutation.csv")
    perm = perm[(perm["method"] == NULLS_METHOD) & perm["ran"].astype(bool)]
    if perm.empty:
        return _empty("No AttnRes models in this grid: no permutation tests.")
    nulls = load_nulls(summary_dir / "permutation_nulls.npz")
    fig, _, panels = _panels(perm, *_variant_feature_columns(perm), "null density", "weighted gap")
    for ax, pair, col, sub in panels:
        feature = col["feature"]
        for k, row in enumerate(sub.sort_values("seed").itertuples(index=False)):
            cell = f"{pair[0]}/{pair[1]}/{col['variant']}/seed{row.seed}"
            null = nulls.get(f"{cell}/{NULLS_METHOD}/{feature}")
            if null is None:
                raise ValueError(
                    f"permutation_nulls.npz lacks '{cell}/{NULLS_METHOD}/{feature}'; re-run the "
                    "aggregation"
                )
            color = f"C{k % 8}"
            ax.hist(null, bins=30, histtype="step", density=True, color=color, lw=0.8)
            ax.axvline(
                float(nulls[f"{cell}/{NULLS_METHOD}/observed_{feature}"]),
                color=color,
                lw=1.0,
                ls="-",
                label=f"seed {row.seed}: p={row.p_value:.3g}",
            )
        ax.legend(loc="upper right", handlelength=0.8, fontsize=5)
        ax.set_yticks([])
    return fig


def bandwidth(summary_dir: Path, metric: str = BAND_METRIC) -> Figure:
    """Worst-tertile ECE (by depth variance) against the Scott multiplier, mean over seeds.

    The nw-conf seed-variance band (mean +- sample std at each multiplier) is shaded; other probes
    are lines with std error bars; CV-NLL (mean selected multiplier) is a circle and the global-ECE
    oracle a star labelled "oracle (uses test ECE)".
    """
    df = _read(summary_dir, "bandwidth.csv")
    df = df[df["metric"] == metric]
    if df.empty:
        return _empty("No AttnRes models in this grid: no bandwidth study.")
    probes = sorted(df["probe"].unique(), key=probe_key)
    fig, axes, panels = _panels(
        df, *_variant_columns(df), "worst-tertile ECE", "bandwidth multiplier", w=1.9
    )
    for ax, _, _, sub in panels:
        for k, probe in enumerate(probes):
            color = "0.35" if probe == "nw-conf" else f"C{k % 8}"
            scott = sub[(sub["probe"] == probe) & (sub["rule"] == "scott")]
            s = (
                scott.groupby("multiplier", sort=True)["value"]
                .agg(["mean", "std"])
                .fillna({"std": 0.0})
            )
            if not s.empty:
                x = s.index.to_numpy(dtype=float)
                if probe == "nw-conf":
                    ax.fill_between(
                        x,
                        s["mean"] - s["std"],
                        s["mean"] + s["std"],
                        color="0.8",
                        lw=0,
                        label="nw-conf seed band",
                    )
                    ax.plot(x, s["mean"], color=color, lw=0.9, label="nw-conf (Scott)")
                else:
                    ax.errorbar(
                        x,
                        s["mean"],
                        yerr=s["std"],
                        color=color,
                        marker="o",
                        ms=2.5,
                        capsize=1.5,
                        label=f"{probe} (Scott)",
                    )
            for rule, marker, text in (
                ("cv-nll", "o", "CV-NLL"),
                ("oracle", "*", "oracle (uses test ECE)"),
            ):
                r = sub[(sub["probe"] == probe) & (sub["rule"] == rule)]
                if not r.empty:
                    ax.plot(
                        [r["multiplier"].mean()],
                        [r["value"].mean()],
                        ls="none",
                        marker=marker,
                        ms=6 if marker == "*" else 4,
                        mfc="none" if marker == "o" else color,
                        mec=color,
                        label=f"{probe} {text}",
                    )
        ax.set_xscale("log", base=2)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncols=2)
    return fig


def cv_curves(summary_dir: Path) -> Figure:
    """Five-fold cross-validated NLL of the NW probes over the multiplier grid (mean +- std over
    seeds, calibration split only), with each seed's selected multiplier as a tick on the axis."""
    df = _read(summary_dir, "bandwidth.csv")
    cv = df[df["metric"] == "cv_nll"]  # the CV curve (rule "cv-nll-curve" or "cv-nll")
    if cv.empty:
        return _empty("No CV-NLL curves in this grid.")
    chosen = df[(df["rule"] == "cv-nll") & (df["metric"] == BAND_METRIC)]
    probes = sorted(cv["probe"].unique(), key=probe_key)
    fig, axes, panels = _panels(cv, *_variant_columns(cv), "CV NLL", "bandwidth multiplier", w=1.9)
    for ax, pair, col, sub in panels:
        for k, probe in enumerate(probes):
            s = (
                sub[sub["probe"] == probe]
                .groupby("multiplier", sort=True)["value"]
                .agg(["mean", "std"])
            )
            if s.empty:
                continue
            color = f"C{k % 8}"
            s = s.fillna({"std": 0.0})
            ax.plot(s.index, s["mean"], color=color, label=probe)
            ax.fill_between(
                s.index,
                s["mean"] - s["std"],
                s["mean"] + s["std"],
                color=color,
                alpha=0.2,
                lw=0,
            )
            sel = _sel(chosen, dataset=pair[0], substrate=pair[1], probe=probe, **col)
            for m in sorted(sel["multiplier"].unique()):
                ax.axvline(float(m), color=color, lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
    axes[0, 0].legend(loc="upper center")
    return fig


def routing_profiles(summary_dir: Path) -> Figure:
    """Per-consumer routing profiles: mean mixing weight of each source (rows: consumers in depth
    order, columns: source index from the embedding up), averaged over test examples and seeds."""
    df = _read(summary_dir, "routing_profiles.csv")
    df = df[df["variant"] != BASELINE]
    if df.empty:
        return _empty("No AttnRes models in this grid: no routing profiles.")
    fig, axes, panels = _panels(
        df, *_variant_columns(df), "consumer", "source (0 = embedding)", w=1.9, h=1.9,
        xlabel_size=6,
    )
    vmax = float(df.groupby([*GROUP_KEYS, "consumer_index", "source"])["alpha_mean"].mean().max())
    image = None
    for ax, _, _, sub in panels:
        mat = sub.pivot_table(
            index="consumer_index", columns="source", values="alpha_mean", aggfunc="mean"
        )
        names = (
            sub.drop_duplicates("consumer_index")
            .set_index("consumer_index")["consumer"]
            .reindex(mat.index)
        )
        image = ax.imshow(
            mat.to_numpy(dtype=float),
            aspect="auto",
            interpolation="nearest",
            vmin=0.0,
            vmax=vmax,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(names) <= 16:
            ax.set_yticks(range(len(names)), [str(n) for n in names], fontsize=5)
    if image is not None:
        fig.colorbar(
            image,
            ax=axes.ravel().tolist(),
            shrink=min(0.9, 1.2 / axes.shape[0]),
            aspect=15,
            label="mean weight",
        )
    return fig


def training(summary_dir: Path) -> Figure:
    """Test accuracy and test ECE over training epochs: mean over seeds per variant, with the
    seed range (min to max) shaded."""
    df = _read(summary_dir, "history.csv")
    if df.empty:
        return _empty("No training histories.")
    pairs = _pairs(df)
    cols = (("test_acc", "test accuracy"), ("test_ece", "test ECE"))
    fig, axes = _grid(len(pairs), len(cols), w=2.6, h=1.4)
    variants = sorted(df["variant"].unique(), key=variant_key)
    for i, pair in enumerate(pairs):
        for j, (col, label) in enumerate(cols):
            ax = axes[i, j]
            for k, variant in enumerate(variants):
                sub = _sel(df, dataset=pair[0], substrate=pair[1], variant=variant)
                if sub.empty:
                    continue
                s = sub.groupby("epoch", sort=True)[col].agg(["mean", "min", "max"])
                color = _variant_color(variant, k)
                ax.fill_between(s.index, s["min"], s["max"], color=color, alpha=0.2, lw=0)
                ax.plot(s.index, s["mean"], color=color, label=_name(variant))
            if j == 0:
                _row_label(ax, pair, label)
            else:
                ax.set_ylabel(label)
            if i == len(pairs) - 1:
                ax.set_xlabel("epoch")
    axes[0, 0].legend(loc="lower right")
    return fig


#: Line styles of the within-bin tests in the planted-control figure.
_TEST_STYLES = {"residualised": "-", "within-bin": "--"}


def planted_power(summary_dir: Path) -> Figure:
    """Power curves of the planted control: each within-bin test's rejection rate against the
    achieved within-bin effect (mean over seeds; 95% Clopper-Pearson bars; solid: residualised,
    dashed: the paper's test; dotted lines at alpha = 0.05 and power 0.8), and the worst-tertile
    ECE gain of the routing-aware probe over nw-conf (mean +- std over seeds)."""
    pooled = pooled_planted(_read(summary_dir, "planted.csv"))
    if pooled.empty:
        return _empty("No AttnRes models in this grid: no planted control.")
    pairs = _pairs(pooled)
    fig, axes = _grid(2, len(pairs), w=2.2)
    for j, pair in enumerate(pairs):
        top, bottom = axes[0, j], axes[1, j]
        sub = _sel(pooled, dataset=pair[0], substrate=pair[1])
        for i, ((variant, feature), g) in enumerate(sub.groupby(["variant", "feature"], sort=True)):
            color = _variant_color(str(variant), i)
            for method, m in g.groupby("method", sort=True):
                x = np.array([a.mean for a in m["achieved"]])
                rate = m["rate"].to_numpy(dtype=float)
                err = np.vstack([rate - m["lo"].to_numpy(dtype=float),
                                 m["hi"].to_numpy(dtype=float) - rate])
                top.errorbar(x, rate, yerr=err, color=color, ls=_TEST_STYLES.get(method, ":"),
                             marker="o", ms=2.5, lw=1, capsize=2,
                             label=f"{_name(variant)} ({_name(feature)}), {method}")
            first = g[g["method"] == g["method"].iloc[0]]
            x = np.array([a.mean for a in first["achieved"]])
            mean = np.array([s.mean for s in first["gain"]])
            std = np.nan_to_num(np.array([s.std for s in first["gain"]]))
            bottom.plot(x, mean, color=color, marker="o", ms=2.5, lw=1)
            bottom.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        top.axhline(0.05, color="0.5", ls=":", lw=0.8)
        top.axhline(0.8, color="0.5", ls=":", lw=0.8)
        top.set_ylim(-0.03, 1.03)
        top.set_title(f"{_name(pair[0])} / {_name(pair[1])}")
        bottom.axhline(0.0, color="0.5", ls=":", lw=0.8)
        bottom.set_xlabel("achieved within-bin effect")
        if j == 0:
            top.set_ylabel("rejection rate")
            bottom.set_ylabel("worst-tertile ECE gain")
        top.legend(loc="lower right", fontsize=4)
    return fig


FIGURES: dict[str, FigureSpec] = {
    "reliability": FigureSpec(reliability, ("reliability.csv",)),
    "permutation_nulls": FigureSpec(
        permutation_nulls, ("permutation.csv", "permutation_nulls.npz")
    ),
    "bandwidth": FigureSpec(bandwidth, ("bandwidth.csv",)),
    "cv_curves": FigureSpec(cv_curves, ("bandwidth.csv",)),
    "routing_profiles": FigureSpec(routing_profiles, ("routing_profiles.csv",)),
    "training": FigureSpec(training, ("history.csv",)),
    "planted_power": FigureSpec(planted_power, ("planted.csv",)),
}


def render_figure(
    name: str, summary_dir: str | os.PathLike[str], out_path: str | os.PathLike[str]
) -> Path:
    """Draw figure ``name`` of ``FIGURES`` under the arcal style and save it atomically as PDF."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose one of {sorted(FIGURES)}")
    out = Path(out_path)
    if out.suffix.lower() != ".pdf":
        raise ValueError(f"out_path={str(out)!r} must end in .pdf")
    with matplotlib.rc_context(fname=str(STYLE_FILE)):
        fig = FIGURES[name].function(Path(summary_dir))
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata=PDF_METADATA)
    atomic_write_bytes(out, buf.getvalue())
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m arcal.report.figures NAME --summary results/summary --out paper/figures/NAME.pdf``."""
    ap = argparse.ArgumentParser(
        prog="python -m arcal.report.figures", description="Render one figure (PDF)."
    )
    ap.add_argument("name", choices=sorted(FIGURES))
    ap.add_argument(
        "--summary", required=True, help="summary folder written by arcal.report.aggregate"
    )
    ap.add_argument("--out", required=True, help="output .pdf path")
    args = ap.parse_args(argv)
    render_figure(args.name, args.summary, args.out)


if __name__ == "__main__":
    main()
