"""Aggregate per-cell results into tidy summary tables (the aggregation stage).

A *cell* is ``{dataset}/{substrate}/{variant}/seed{seed}``. For every cell this module reads

* ``metrics/{cell}.csv`` (metric, value), ``train/{cell}/history.csv``, ``dumps/{cell}/test.npz``
  and, where present, ``dumps/{cell}/routing_profile.npz`` (all variants);
* ``probes/{cell}.csv``, ``permutation/{cell}.csv`` + ``permutation/{cell}.null.npz`` and
  ``bandwidth/{cell}.csv`` (AttnRes variants only; the baseline has no routing trace),

and writes, under ``out_dir``, one long-format CSV per kind with the cell keys
(dataset, substrate, variant, seed) as leading columns, rows sorted by those keys:
``cells.csv``, ``metrics.csv``, ``probes.csv``, ``permutation.csv`` (plus ``reject_bh``, the
Benjamini-Hochberg decision over the family of all tests of one method that ran, and its level
``bh_alpha``; tests that did not run have an empty ``reject_bh`` and are in no family),
``bandwidth.csv``, ``capacity.csv``, ``history.csv``, ``reliability.csv``, ``routing_profiles.csv`` and
``permutation_nulls.npz``. Means and standard deviations over seeds are computed where they are
shown (``seed_stats``), never stored, so every table reads the same per-seed numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from arcal.io import atomic_save_npz, atomic_write_text

CELL_KEYS = ["dataset", "substrate", "variant", "seed"]
GROUP_KEYS = ["dataset", "substrate", "variant"]
BASELINE = "baseline"
ROUTING_FEATURES = ("r_agg", "depth_var")
CAPACITY_PROBES = ("linear-conf", "mlp-conf", "mlp-full", "mlp-shuffled")

_CELL_RE = re.compile(
    r"^(?P<dataset>[^/]+)/(?P<substrate>[^/]+)/(?P<variant>[^/]+)/seed(?P<seed>\d+)$"
)

#: Required columns of each per-cell input, as written by the per-cell stages (arcal.analysis).
INPUT_COLUMNS = {
    "metrics": ["metric", "value"],
    "probes": ["probe", "bandwidth_rule", "multiplier", "metric", "value", "n_params"],
    "permutation": [
        "feature",
        "method",
        "ran",
        "n_bins_used",
        "max_gap",
        "weighted_gap",
        "p_value",
        "p_value_max",
        "n_perm",
        "reject",
    ],
    "bandwidth": ["probe", "rule", "multiplier", "metric", "value"],
    "history": [
        "epoch",
        "train_loss",
        "train_acc",
        "test_acc",
        "test_ece",
        "test_nll",
        "lr",
        "seconds",
    ],
}

class Options(NamedTuple):
    """Settings the summaries depend on (the config's ``calibration`` block): the level of the
    Benjamini-Hochberg adjustment and the number of confidence bins of the reliability table."""

    alpha: float = 0.05
    n_bins: int = 15


class MissingInputError(ValueError):
    """A per-cell input file that the aggregation needs does not exist."""


def parse_cell(cell: str) -> dict[str, object]:
    """Split ``dataset/substrate/variant/seedN`` into its keys (seed as int)."""
    m = _CELL_RE.match(cell.strip())
    if m is None:
        raise ValueError(
            f"cell={cell!r} is not of the form '{{dataset}}/{{substrate}}/{{variant}}/seed{{N}}'"
        )
    keys: dict[str, object] = m.groupdict()
    keys["seed"] = int(m["seed"])
    return keys


def read_cells_file(path: str | os.PathLike[str]) -> list[str]:
    """Cells listed one per line; blank lines and lines starting with ``#`` are ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]


def is_attnres(variant: str) -> bool:
    """True for variants that carry a routing trace (everything but the standard-residual baseline)."""
    return variant != BASELINE


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingInputError(
            f"missing {what} file {str(path)!r}; run the stage that writes it first"
        )
    return path


def _read_csv(path: Path, kind: str, keys: dict[str, object]) -> pd.DataFrame:
    df = pd.read_csv(_need(path, kind))
    missing = [c for c in INPUT_COLUMNS[kind] if c not in df.columns]
    if missing:
        raise ValueError(f"{str(path)!r} lacks columns {missing}; expected {INPUT_COLUMNS[kind]}")
    df = df[INPUT_COLUMNS[kind]].copy()
    for k in reversed(CELL_KEYS):
        df.insert(0, k, keys[k])
    return df


def _reliability_rows(
    keys: dict[str, object], conf: np.ndarray, correct: np.ndarray,
    features: dict[str, np.ndarray], n_bins: int,
) -> list[dict[str, object]]:
    """Per-bin counts and sums for all examples (feature 'all', tertile 0) and per routing tertile.

    Bins and tertiles are the statistics library's (``arcal.calibration.bin_index``: ``n_bins``
    equal-width bins, left-closed, last bin holds 1; ``tertile_index``: stable-rank tertiles, as in the
    worst-tertile ECE), so the diagrams show exactly the groups the metrics score. Tertiles are
    formed within each model (seed) before pooling, numbered 1 (low) to 3 (high).
    """
    # arcal.calibration imports torch, so it is imported here, not by the tables/figures modules
    from arcal.calibration import bin_index, tertile_index

    rows = []
    groups: list[tuple[str, int, np.ndarray]] = [("all", 0, np.ones(conf.size, dtype=bool))]
    for name, r in features.items():
        t = tertile_index(r) + 1
        groups += [(name, k, t == k) for k in (1, 2, 3)]
    b = bin_index(conf, n_bins)
    for feature, tertile, mask in groups:
        n = np.bincount(b[mask], minlength=n_bins)
        s_acc = np.bincount(b[mask], weights=correct[mask], minlength=n_bins)
        s_conf = np.bincount(b[mask], weights=conf[mask], minlength=n_bins)
        for k in range(n_bins):
            rows.append(
                {
                    **{g: keys[g] for g in GROUP_KEYS},
                    "feature": feature,
                    "tertile": tertile,
                    "bin": k,
                    "n": int(n[k]),
                    "sum_acc": float(s_acc[k]),
                    "sum_conf": float(s_conf[k]),
                }
            )
    return rows


def _check_meta(meta: str, keys: dict[str, object], cell: str) -> None:
    """The dump's own record of its cell must match the path it was found under. (Its
    `substrate` is the registered architecture, which a config may name differently, so only
    dataset, variant and seed are compared.)"""
    try:
        info = json.loads(meta)
    except json.JSONDecodeError as err:
        raise ValueError(f"dump of {cell!r} has a meta string that is not JSON: {err}") from None
    for k in ("dataset", "variant", "seed"):
        if k in info and str(info[k]) != str(keys[k]):
            raise ValueError(
                f"dump of {cell!r} says {k}={info[k]!r}; the file is under the wrong cell path"
            )


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False, lineterminator="\n"))


def _sorted(
    frames: list[pd.DataFrame], columns: list[str], extra_sort: Sequence[str] = ()
) -> pd.DataFrame:
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    df = df[columns]
    return df.sort_values([*CELL_KEYS, *extra_sort], kind="stable").reset_index(drop=True)


#: Per-cell input files by kind, relative to the results folder; AttnRes-only kinds marked.
INPUT_PATHS = {
    "metrics": "metrics/{cell}.csv",
    "history": "train/{cell}/history.csv",
    "dump": "dumps/{cell}/test.npz",
    "profile": "dumps/{cell}/routing_profile.npz",
    "probes": "probes/{cell}.csv",
    "permutation": "permutation/{cell}.csv",
    "null": "permutation/{cell}.null.npz",
    "bandwidth": "bandwidth/{cell}.csv",
}
ATTNRES_ONLY = frozenset({"profile", "probes", "permutation", "null", "bandwidth"})


def _check_cells(cells: Sequence[str]) -> list[dict[str, object]]:
    if not cells:
        raise ValueError(
            "cells is empty; list at least one '{dataset}/{substrate}/{variant}/seed{N}' cell"
        )
    if len(set(cells)) != len(cells):
        raise ValueError("cells contains duplicates; list each cell once")
    return sorted((parse_cell(c) for c in cells), key=lambda k: tuple(k[c] for c in CELL_KEYS))


def _cell_id(keys: dict[str, object]) -> str:
    return f"{keys['dataset']}/{keys['substrate']}/{keys['variant']}/seed{keys['seed']}"


def _per_cell(res: Path, parsed: list[dict[str, object]], kind: str) -> list[pd.DataFrame]:
    """The CSV of `kind` of every cell that has one (AttnRes cells for AttnRes-only kinds)."""
    return [
        _read_csv(res / INPUT_PATHS[kind].format(cell=_cell_id(k)), kind, k)
        for k in parsed
        if kind not in ATTNRES_ONLY or is_attnres(str(k["variant"]))
    ]


def _read_test_dump(res: Path, keys: dict[str, object]) -> dict[str, object]:
    """Top-label confidence, correctness, routing features and L of a cell's test dump."""
    from arcal.calibration import top_label  # imported here: it pulls in torch

    cell = _cell_id(keys)
    with np.load(_need(res / INPUT_PATHS["dump"].format(cell=cell), "test dump"), allow_pickle=False) as d:
        conf, pred, _ = top_label(d["logits"])
        _check_meta(str(d["meta"]), keys, cell)
        dump = {
            "conf": conf,
            "correct": (pred == d["labels"]).astype(np.float64),
            "n_consumers": int(d["H"].shape[1]),
            "features": {f: np.asarray(d[f], dtype=np.float64) for f in ROUTING_FEATURES},
        }
    if is_attnres(str(keys["variant"])) and dump["n_consumers"] == 0:
        raise ValueError(
            f"dump of AttnRes cell {cell!r} has no consumers (L = 0); re-run its dump stage"
        )
    return dump


def _cells_table(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
    rows = []
    for keys in parsed:
        d = _read_test_dump(res, keys)
        rows.append({**keys, "n_test": int(d["conf"].size), "n_consumers": d["n_consumers"]})
    return _sorted([pd.DataFrame(rows)], [*CELL_KEYS, "n_test", "n_consumers"])


def _reliability_table(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    for keys in parsed:
        d = _read_test_dump(res, keys)
        ar = is_attnres(str(keys["variant"]))
        rows += _reliability_rows(keys, d["conf"], d["correct"], d["features"] if ar else {},
                                  opts.n_bins)
    return _pool_reliability(rows, opts.n_bins)


def _profiles_table(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
    rows = []
    for keys in parsed:
        path = res / INPUT_PATHS["profile"].format(cell=_cell_id(keys))
        if not (is_attnres(str(keys["variant"])) or path.is_file()):
            continue
        with np.load(_need(path, "routing profile"), allow_pickle=False) as p:
            alpha_mean = np.asarray(p["alpha_mean"], dtype=float)
            for li, (name, ns) in enumerate(zip(p["consumers"], p["n_sources"])):
                rows += [
                    {**keys, "consumer_index": li, "consumer": str(name), "n_sources": int(ns),
                     "source": s, "alpha_mean": float(alpha_mean[li, s])}
                    for s in range(int(ns))
                ]
    return _sorted(
        [pd.DataFrame(rows)] if rows else [],
        [*CELL_KEYS, "consumer_index", "consumer", "n_sources", "source", "alpha_mean"],
        ["consumer_index", "source"],
    )


def _probes_table(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
    frames = _per_cell(res, parsed, "probes")
    for df in frames:
        df["bandwidth_rule"] = df["bandwidth_rule"].fillna("none")
    return _sorted(frames, [*CELL_KEYS, *INPUT_COLUMNS["probes"]])


def _capacity_table(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
    probes = _probes_table(res, parsed, opts)
    return probes[probes["probe"].isin(CAPACITY_PROBES)][
        [*CELL_KEYS, "probe", "n_params", "metric", "value"]
    ].reset_index(drop=True)


def _permutation_table(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
    perm = _sorted(
        _per_cell(res, parsed, "permutation"),
        [*CELL_KEYS, *INPUT_COLUMNS["permutation"]],
        ["feature", "method"],
    )
    perm["ran"] = perm["ran"].astype(bool)
    perm["reject"] = perm["reject"].astype("boolean")
    if (perm["ran"] == perm["reject"].isna()).any():
        raise ValueError("permutation CSVs: `reject` must be empty exactly for tests that did not run")
    perm["reject_bh"] = pd.array([pd.NA] * len(perm), dtype="boolean")
    for _, idx in perm[perm["ran"]].groupby("method").groups.items():
        perm.loc[idx, "reject_bh"] = _bh(perm.loc[idx, "p_value"].to_numpy(dtype=float), opts.alpha)
    perm["bh_alpha"] = opts.alpha
    return perm


def _nulls(res: Path, parsed: list[dict[str, object]], opts: Options) -> dict[str, np.ndarray]:
    nulls: dict[str, np.ndarray] = {}
    for keys in parsed:
        if not is_attnres(str(keys["variant"])):
            continue
        cell = _cell_id(keys)
        path = _need(res / INPUT_PATHS["null"].format(cell=cell), "permutation null")
        with np.load(path, allow_pickle=False) as z:
            for name in z.files:
                nulls[f"{cell}/{name}"] = np.asarray(z[name], dtype=float)
    return nulls


def _simple(kind: str, extra_sort: Sequence[str] = ()) -> Callable[..., pd.DataFrame]:
    def build(res: Path, parsed: list[dict[str, object]], opts: Options) -> pd.DataFrame:
        return _sorted(_per_cell(res, parsed, kind), [*CELL_KEYS, *INPUT_COLUMNS[kind]], extra_sort)

    return build


class Summary(NamedTuple):
    """A summary file: the per-cell input kinds it reads and the function that builds it."""

    inputs: tuple[str, ...]
    build: Callable[..., pd.DataFrame | dict[str, np.ndarray]]


SUMMARIES: dict[str, Summary] = {
    "cells.csv": Summary(("dump",), _cells_table),
    "metrics.csv": Summary(("metrics",), _simple("metrics", ["metric"])),
    "probes.csv": Summary(("probes",), _probes_table),
    "permutation.csv": Summary(("permutation",), _permutation_table),
    "bandwidth.csv": Summary(("bandwidth",), _simple("bandwidth")),
    "capacity.csv": Summary(("probes",), _capacity_table),
    "history.csv": Summary(("history",), _simple("history", ["epoch"])),
    "reliability.csv": Summary(("dump",), _reliability_table),
    "routing_profiles.csv": Summary(("profile",), _profiles_table),
    "permutation_nulls.npz": Summary(("null",), _nulls),
}
SUMMARY_FILES = tuple(SUMMARIES)


def summary_inputs(name: str, cells: Sequence[str]) -> list[str]:
    """Paths (relative to the results folder) of the per-cell files summary `name` reads."""
    if name not in SUMMARIES:
        raise ValueError(f"unknown summary {name!r}; known: {', '.join(SUMMARIES)}")
    return [
        INPUT_PATHS[kind].format(cell=cell)
        for kind in SUMMARIES[name].inputs
        for cell in cells
        if kind not in ATTNRES_ONLY or is_attnres(str(parse_cell(cell)["variant"]))
    ]


def write_summary(
    name: str,
    results_dir: str | os.PathLike[str],
    cells: Sequence[str],
    out_path: str | os.PathLike[str],
    opts: Options = Options(),
) -> Path:
    """Build summary file `name` from the cells under `results_dir` and write it atomically."""
    if name not in SUMMARIES:
        raise ValueError(f"unknown summary {name!r}; known: {', '.join(SUMMARIES)}")
    built = SUMMARIES[name].build(Path(results_dir), _check_cells(cells), opts)
    out = Path(out_path)
    if isinstance(built, dict):
        atomic_save_npz(out, **built)
    else:
        _write_csv(built, out)
    return out


def aggregate(
    results_dir: str | os.PathLike[str],
    cells: Sequence[str],
    out_dir: str | os.PathLike[str],
    opts: Options = Options(),
) -> dict[str, Path]:
    """Read every cell under ``results_dir`` and write all summary files into ``out_dir``.

    ``opts.alpha`` is the level of the Benjamini-Hochberg procedure applied to the permutation
    tests of one method that ran, together (one family: every cell, variant, seed and feature).
    Returns {file name: path}.
    """
    _check_cells(cells)
    return {
        name: write_summary(name, results_dir, cells, Path(out_dir) / name, opts)
        for name in SUMMARIES
    }


def _bh(p_values: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg rejections over all tests as one family (``arcal.calibration``'s)."""
    from arcal.calibration import benjamini_hochberg

    return benjamini_hochberg(p_values, alpha=alpha)


def _pool_reliability(rows: list[dict[str, object]], n_bins: int) -> pd.DataFrame:
    """Pool per-seed bin counts over seeds: n, acc = mean correctness, conf = mean confidence."""
    cols = [*GROUP_KEYS, "feature", "tertile", "bin", "bin_lo", "bin_hi", "n", "acc", "conf"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    g = df.groupby([*GROUP_KEYS, "feature", "tertile", "bin"], sort=True, as_index=False)[
        ["n", "sum_acc", "sum_conf"]
    ].sum()
    n = g["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        g["acc"] = np.where(n > 0, g["sum_acc"] / n, np.nan)
        g["conf"] = np.where(n > 0, g["sum_conf"] / n, np.nan)
    g["bin_lo"] = g["bin"] / n_bins
    g["bin_hi"] = (g["bin"] + 1) / n_bins
    return g[cols].reset_index(drop=True)


def seed_stats(df: pd.DataFrame, by: Sequence[str], value: str = "value") -> pd.DataFrame:
    """Mean, sample std (ddof = 1; NaN for one seed) and seed count of ``value`` per group ``by``."""
    g = df.groupby(list(by), sort=True, dropna=False)[value]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def load_nulls(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read ``permutation_nulls.npz``: keys ``{cell}/{feature}`` and ``{cell}/observed_{feature}``."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m arcal.report.aggregate --results results --cells-file cells.txt --out results/summary``."""
    ap = argparse.ArgumentParser(
        prog="python -m arcal.report.aggregate", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--results", required=True, help="results folder holding metrics/, probes/, dumps/, ..."
    )
    cells = ap.add_mutually_exclusive_group(required=True)
    cells.add_argument("--cells-file", help="text file with one cell per line")
    cells.add_argument("--cells", nargs="+", help="cells given on the command line")
    ap.add_argument("--out", required=True, help="summary folder to write (e.g. results/summary)")
    ap.add_argument(
        "--alpha", type=float, default=0.05, help="Benjamini-Hochberg level (default 0.05)"
    )
    ap.add_argument("--n-bins", type=int, default=15, help="confidence bins (default 15)")
    args = ap.parse_args(argv)
    cell_list = read_cells_file(args.cells_file) if args.cells_file else list(args.cells)
    written = aggregate(args.results, cell_list, args.out, Options(args.alpha, args.n_bins))
    print(json.dumps({k: str(v) for k, v in written.items()}, indent=1))


if __name__ == "__main__":
    main()
