"""Matched-confidence calibration gaps (docs/methods.md, "Matched-confidence gaps").

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

With a ``reference`` array m the residual is e = z - m instead: the residualised test of
:mod:`arcal.calibration.permutation` passes a cross-fitted confidence-only calibration map
(:mod:`arcal.calibration.confidence_map`), so the thirds are compared on what confidence does
*not* explain (docs/methods.md, "Residualised within-bin test").

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
    """One used bin: residuals e = z - reference of its members (original order) and the slot weights
    omega (sorted ascending; a permutation assigns members to slots uniformly at random)."""

    bin: int
    residuals: np.ndarray
    omega: np.ndarray
    weight: float  # n_k / N_used


@dataclass(frozen=True)
class MatchedGaps:
    """Result of :func:`matched_gaps`. ``table`` holds one entry per used bin (arrays keyed
    bin, lo, hi, n, n_third, acc_bottom, conf_bottom, ref_bottom, acc_top, conf_top, ref_top, gap,
    weight; ref_* equal conf_* without a reference);
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


def third_weights(feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Membership weights (top, bottom) of each example of one bin in the top and bottom thirds
    of ``feature`` (m = floor(n / 3) slots each; tied examples straddling a boundary share it
    fractionally). Both arrays are in the examples' order and sum to m."""
    n = feature.shape[0]
    m = n // 3
    order = np.argsort(feature, kind="stable")
    slots = np.arange(n)
    top, bottom = np.empty(n), np.empty(n)
    top[order] = _tie_averaged(feature[order], (slots >= n - m).astype(np.float64))
    bottom[order] = _tie_averaged(feature[order], (slots < m).astype(np.float64))
    return top, bottom


def third_contrast_weights(
    conf: np.ndarray, feature: np.ndarray, n_bins: int = 15, min_bin: int = 30
) -> np.ndarray:
    """Weights w (N,) with w @ values = :func:`third_contrast` of ``values``: in every bin with at
    least ``min_bin`` examples, (n_k / N_used) (top - bottom) / m_k for its members, else 0.
    All zeros when no bin qualifies."""
    c = as_conf(conf, "conf")
    r = as_feature(feature, "feature", c.shape[0])
    idx = bin_index(c, check_int(n_bins, "n_bins", 1))
    counts = np.bincount(idx, minlength=n_bins)
    used = np.flatnonzero(counts >= check_int(min_bin, "min_bin", 3))
    w = np.zeros(c.shape[0])
    n_used = counts[used].sum()
    for k in used:
        members = np.flatnonzero(idx == k)
        top, bottom = third_weights(r[members])
        w[members] = (members.shape[0] / n_used) * (top - bottom) / (members.shape[0] // 3)
    return w


def third_contrast(
    conf: np.ndarray, values: np.ndarray, feature: np.ndarray, n_bins: int = 15, min_bin: int = 30
) -> float:
    """Signed matched-confidence contrast of ``values``: in every bin with at least ``min_bin``
    examples, mean of ``values`` over the top third of ``feature`` minus the bottom third,
    averaged over those bins with weights n_k / N_used (NaN if no bin qualifies). With
    ``values`` = accuracy minus a confidence-only reference this is the planted control's
    achieved within-bin effect."""
    w = third_contrast_weights(conf, feature, n_bins, min_bin)
    v = as_feature(values, "values", w.shape[0])
    return float(w @ v) if w.any() else float("nan")


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
    reference: np.ndarray | None = None,
) -> MatchedGaps:
    """Matched-confidence gaps of ``feature`` (see the module docstring for the definition and the
    tie / third-size conventions). ``min_bin`` must be >= 3 so every third is non-empty.
    ``reference`` (N,) in [0, 1] replaces the confidence in the residual z - c (default: c)."""
    c, z, r, n_bins, min_bin = validate_gap_inputs(conf, correct, feature, n_bins, min_bin)
    ref = c if reference is None else as_conf(reference, "reference", c.shape[0])
    idx = bin_index(c, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    used = np.flatnonzero(counts >= min_bin)
    n_used = int(counts[used].sum())
    edges = bin_edges(n_bins)
    cols: dict[str, list[float]] = {
        k: []
        for k in ("bin", "lo", "hi", "n", "n_third", "acc_bottom", "conf_bottom", "ref_bottom",
                  "acc_top", "conf_top", "ref_top", "gap", "weight")
    }
    designs = []
    for k in used:
        members = np.flatnonzero(idx == k)
        n = members.shape[0]
        m = n // 3
        top, bottom = third_weights(r[members])
        zs, cs, ms = z[members], c[members], ref[members]
        acc_t, conf_t, ref_t = top @ zs / m, top @ cs / m, top @ ms / m
        acc_b, conf_b, ref_b = bottom @ zs / m, bottom @ cs / m, bottom @ ms / m
        gap = abs((acc_t - ref_t) - (acc_b - ref_b))
        weight = n / n_used
        for key, val in (("bin", k), ("lo", edges[k]), ("hi", edges[k + 1]), ("n", n),
                         ("n_third", m), ("acc_bottom", acc_b), ("conf_bottom", conf_b),
                         ("ref_bottom", ref_b), ("acc_top", acc_t), ("conf_top", conf_t),
                         ("ref_top", ref_t), ("gap", gap), ("weight", weight)):
            cols[key].append(val)
        omega = np.sort((top - bottom) / m)
        designs.append(BinDesign(int(k), z[members] - ref[members], omega, weight))
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
