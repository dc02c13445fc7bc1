"""Matched-confidence calibration gaps (DESIGN section 2, "Matched-confidence gaps").

In every confidence bin with at least ``min_bin`` examples, rank the feature r inside the bin and
compare the calibration gap (acc - conf) of the top third with that of the bottom third:

    gap_k = |(acc - conf)_top - (acc - conf)_bottom|,
    max gap = max_k gap_k,   weighted gap = sum_k (n_k / N_used) gap_k,

N_used = number of examples in the bins used. Conventions (ours; the paper does not state them):

* third size m_k = floor(n_k / 3); bottom third = the m_k examples with the smallest r, top third
  = the m_k with the largest r;
* ties in r are resolved by averaging over every way of breaking them: tied examples that straddle
  a third's boundary count with a fractional weight (the share of the boundary slots their tie
  group covers). So the gap does not depend on the order of the examples, and a constant feature
  gives gap 0 in every bin;
* (acc - conf) of a third is the (weighted) mean of the residual e = z - c over its members.

Since gap_k is linear in the residuals, the bin's statistic is |sum_j omega_j e_(j)| with one
weight omega_j per rank slot j (+1/m_k top, -1/m_k bottom, 0 middle, averaged within tie
groups); :mod:`arcal.calibration.permutation` permutes the residuals over these slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import as_binary, as_conf, as_feature, check_int
from .binning import bin_edges, bin_index


@dataclass(frozen=True)
class BinDesign:
    """One used bin: residuals e = z - c of its members (original order) and the slot weights
    omega (sorted ascending; a permutation assigns members to slots uniformly at random)."""

    bin: int
    residuals: np.ndarray
    omega: np.ndarray
    weight: float  # n_k / N_used


@dataclass(frozen=True)
class MatchedGaps:
    """Result of :func:`matched_gaps`. ``table`` holds one entry per used bin (arrays keyed
    bin, lo, hi, n, n_third, acc_bottom, conf_bottom, acc_top, conf_top, gap, weight);
    ``max_gap`` and ``weighted_gap`` are NaN when no bin reaches ``min_bin``."""

    max_gap: float
    weighted_gap: float
    n_bins_used: int
    n_used: int
    table: dict[str, np.ndarray] = field(repr=False)
    designs: tuple[BinDesign, ...] = field(repr=False)


def _tie_averaged(sorted_values: np.ndarray, slot_values: np.ndarray) -> np.ndarray:
    """Average ``slot_values`` (one per rank slot) within groups of equal sorted feature values."""
    _, group = np.unique(sorted_values, return_inverse=True)
    sums = np.bincount(group, weights=slot_values)
    return (sums / np.bincount(group))[group]


def validate_gap_inputs(
    conf: object, correct: object, feature: object, n_bins: object, min_bin: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Validated (conf, correct, feature, n_bins, min_bin) for the gap and permutation functions."""
    c = as_conf(conf, "conf")
    z = as_binary(correct, "correct", c.shape[0])
    r = as_feature(feature, "feature", c.shape[0])
    n_bins = check_int(n_bins, "n_bins", 1)
    min_bin = check_int(min_bin, "min_bin", 3)
    return c, z, r, n_bins, min_bin


def matched_gaps(
    conf: np.ndarray,
    correct: np.ndarray,
    feature: np.ndarray,
    n_bins: int = 15,
    min_bin: int = 30,
) -> MatchedGaps:
    """Matched-confidence gaps of ``feature`` (see the module docstring for the definition and the
    tie / third-size conventions). ``min_bin`` must be >= 3 so every third is non-empty."""
    c, z, r, n_bins, min_bin = validate_gap_inputs(conf, correct, feature, n_bins, min_bin)
    idx = bin_index(c, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    used = np.flatnonzero(counts >= min_bin)
    n_used = int(counts[used].sum())
    edges = bin_edges(n_bins)
    cols: dict[str, list[float]] = {
        k: []
        for k in ("bin", "lo", "hi", "n", "n_third", "acc_bottom", "conf_bottom",
                  "acc_top", "conf_top", "gap", "weight")
    }
    designs = []
    for k in used:
        members = np.flatnonzero(idx == k)
        n = members.shape[0]
        m = n // 3
        order = np.argsort(r[members], kind="stable")
        rs = r[members][order]
        slots = np.arange(n)
        top = _tie_averaged(rs, (slots >= n - m).astype(np.float64))
        bottom = _tie_averaged(rs, (slots < m).astype(np.float64))
        zs, cs = z[members][order], c[members][order]
        acc_t, conf_t = top @ zs / m, top @ cs / m
        acc_b, conf_b = bottom @ zs / m, bottom @ cs / m
        gap = abs((acc_t - conf_t) - (acc_b - conf_b))
        weight = n / n_used
        for key, val in (("bin", k), ("lo", edges[k]), ("hi", edges[k + 1]), ("n", n),
                         ("n_third", m), ("acc_bottom", acc_b), ("conf_bottom", conf_b),
                         ("acc_top", acc_t), ("conf_top", conf_t), ("gap", gap),
                         ("weight", weight)):
            cols[key].append(val)
        omega = np.sort((top - bottom) / m)
        designs.append(BinDesign(int(k), z[members] - c[members], omega, weight))
    table = {
        k: np.asarray(v, dtype=np.int64 if k in ("bin", "n", "n_third") else np.float64)
        for k, v in cols.items()
    }
    if used.size == 0:
        max_gap = weighted_gap = float("nan")
    else:
        max_gap = float(table["gap"].max())
        weighted_gap = float(table["gap"] @ table["weight"])
    return MatchedGaps(max_gap, weighted_gap, int(used.size), n_used, table, tuple(designs))
