"""Within-confidence-bin permutation test of a routing feature (DESIGN section 2).

Statistic T = weighted matched gap (:func:`arcal.calibration.gaps.matched_gaps`). Null: the
feature is permuted among the examples of each confidence bin, independently per bin, which keeps
every (c, z) pair and the composition of every bin. p = (1 + #{T_perm >= T_obs}) / (B + 1)
(Phipson & Smyth 2010: never 0), with ties counted within a relative tolerance of 100 float64
eps, as ``scipy.stats.permutation_test`` does.

How the null is drawn. Within a bin, gap_k = |sum_j omega_j e_(j)| where slot j is the j-th rank
of the feature and omega_j its weight (gaps module). Permuting the feature over the members is
the same as assigning the members to the slots by a uniformly random permutation, so the feature
itself is never re-sorted: per bin and per chunk of B_c permutations, one (B_c, n_k) array of
random integer keys whose low bits hold the member index is sorted row-wise (a value sort, which
numpy does with SIMD), the low bits give the permutation, and a gather and a row sum per run of
equal weight give the B_c gaps. Keys carry at least 19 random bits above the index; a row whose
random parts tie across a boundary between slots of different weight is redrawn, so the
assignment to weight blocks is exactly uniform (the redraw condition is symmetric in the members,
and a tie inside a block changes nothing). Chunks bound memory (``chunk_elems`` keys per chunk)
and each chunk has its own SFC64 generator spawned from ``seed``.

With a single bin the null is scipy's unstratified ``permutation_test`` (tested); with bins it is
the within-group permutation of sklearn's ``permutation_test_score(groups=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import check_int
from .gaps import BinDesign, MatchedGaps, matched_gaps, validate_gap_inputs

_TIE_RTOL = 100 * float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class PermutationResult:
    """``statistic`` (= ``weighted_gap``), ``pvalue`` and the ``null`` statistics (length
    ``n_perm``); NaN statistic and p-value and an empty null when no bin reaches ``min_bin``."""

    statistic: float
    pvalue: float
    null: np.ndarray = field(repr=False)
    n_perm: int
    max_gap: float
    weighted_gap: float
    n_bins_used: int
    gaps: MatchedGaps = field(repr=False)


def _bin_gaps(design: BinDesign, rows: int, rng: np.random.Generator) -> np.ndarray:
    """|sum_j omega_j e_sigma(j)| for ``rows`` independent uniform permutations sigma."""
    e, omega = design.residuals, design.omega
    n = e.shape[0]
    idx_bits = max(1, (n - 1).bit_length())
    dtype = np.uint32 if idx_bits <= 13 else np.uint64  # >= 19 random bits above the index
    mask = dtype((1 << idx_bits) - 1)
    boundaries = np.flatnonzero(np.diff(omega) != 0)
    # runs of equal non-zero weight (2 runs for a feature without ties, a few more with ties)
    starts = np.concatenate(([0], boundaries + 1))
    stops = np.concatenate((boundaries + 1, [n]))
    runs = [(a, b, omega[a]) for a, b in zip(starts, stops) if omega[a] != 0]
    slot_ids = np.arange(n, dtype=dtype)

    def draw(k: int) -> np.ndarray:
        words = -(-k * n * np.dtype(dtype).itemsize // 8)
        keys = rng.bit_generator.random_raw(words).view(dtype)[: k * n].reshape(k, n)
        keys &= ~mask
        keys |= slot_ids
        keys.sort(axis=1)
        return keys

    keys = draw(rows)
    while boundaries.size:
        rand = keys[:, boundaries] >> dtype(idx_bits)
        nxt = keys[:, boundaries + 1] >> dtype(idx_bits)
        bad = np.flatnonzero((rand == nxt).any(axis=1))
        if bad.size == 0:
            break
        keys[bad] = draw(bad.size)
    # one gather-and-sum per run of equal weight (no BLAS call, so no OpenBLAS threads)
    d = np.zeros(rows)
    for a, b, w in runs:
        slots = keys[:, a:b]
        slots &= mask  # only the weighted slots need their member index decoded
        d += w * e[slots].sum(axis=1)
    return np.abs(d)


def _null_chunk(
    designs: tuple[BinDesign, ...], rows: int, seed: np.random.SeedSequence
) -> np.ndarray:
    rng = np.random.Generator(np.random.SFC64(seed))  # the fastest raw bits numpy ships
    out = np.zeros(rows)
    for design in designs:
        out += design.weight * _bin_gaps(design, rows, rng)
    return out


def permutation_test(
    conf: np.ndarray,
    correct: np.ndarray,
    feature: np.ndarray,
    n_bins: int = 15,
    min_bin: int = 30,
    n_perm: int = 10_000,
    seed: int = 0,
    chunk_elems: int = 1 << 22,
) -> PermutationResult:
    """Within-bin permutation test of the weighted matched gap of ``feature``.

    Deterministic for fixed ``seed`` and ``chunk_elems``.
    """
    c, z, r, n_bins, min_bin = validate_gap_inputs(conf, correct, feature, n_bins, min_bin)
    n_perm = check_int(n_perm, "n_perm", 1)
    chunk_elems = check_int(chunk_elems, "chunk_elems", 1)
    check_int(seed, "seed", 0)
    gaps = matched_gaps(c, z, r, n_bins=n_bins, min_bin=min_bin)
    if gaps.n_bins_used == 0:
        return PermutationResult(float("nan"), float("nan"), np.empty(0), n_perm,
                                 gaps.max_gap, gaps.weighted_gap, 0, gaps)
    rows = max(1, min(n_perm, chunk_elems // max(1, gaps.n_used)))
    sizes = [min(rows, n_perm - s) for s in range(0, n_perm, rows)]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    null = np.concatenate([_null_chunk(gaps.designs, k, s) for k, s in zip(sizes, seeds)])
    t_obs = gaps.weighted_gap
    count = int(np.sum(null >= t_obs - _TIE_RTOL * abs(t_obs)))
    pvalue = (1.0 + count) / (n_perm + 1.0)
    return PermutationResult(t_obs, pvalue, null, n_perm, gaps.max_gap, t_obs,
                             gaps.n_bins_used, gaps)


def benjamini_hochberg(pvalues: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up procedure: boolean mask of rejected hypotheses at FDR ``alpha``.

    Reject the k smallest p-values, k = max{i : p_(i) <= i alpha / m}. NaN p-values (tests that
    could not run) are never rejected and do not count in m.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues: expected a 1-D array, got shape {p.shape}")
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha: must lie in (0, 1), got {alpha!r}")
    ok = np.flatnonzero(~np.isnan(p))
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("pvalues: values must lie in [0, 1] (or be NaN)")
    reject = np.zeros(p.shape[0], dtype=bool)
    m = ok.size
    if m == 0:
        return reject
    order = ok[np.argsort(p[ok], kind="stable")]
    below = np.flatnonzero(p[order] <= alpha * np.arange(1, m + 1) / m)
    if below.size:
        reject[order[: below[-1] + 1]] = True
    return reject
