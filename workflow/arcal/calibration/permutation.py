"""Within-confidence-bin permutation tests of a routing feature (docs/methods.md, "Permutation
tests").

Both methods use the matched-confidence gaps of :mod:`arcal.calibration.gaps` and the same null:
the feature is permuted among the examples of each confidence bin, independently per bin, which
keeps every (c, z) pair and the composition of every bin. They differ in the residual compared
between the top and bottom thirds of the feature:

* ``"within-bin"`` (the paper's test): e = z - c. Inside a bin 1/15 wide, a feature that moves
  with confidence and a miscalibration that changes across the bin make the thirds differ for
  confidence reasons alone, so this test rejects nulls in which the feature adds nothing beyond c
  (size 0.5-0.8 for z ~ Bernoulli(c^3) and a feature tracking c; ``bench/size_power.py``).
* ``"residualised"`` (the default): e = z - m(c), m a confidence-only calibration map cross-fitted
  on the same split (:func:`arcal.calibration.confidence_map.cross_fitted_map`, 5 folds), so
  what confidence explains is removed before the thirds are compared. It keeps its size under
  curved and tempered miscalibration with features that track confidence, at the power of the
  paper's test when the features do not (``bench/size_power.py``; docs/methods.md says why it
  was chosen over finer strata and over conditional permutation within near-equal confidences).

Statistics: T = weighted gap (the test's ``statistic``) and the max gap, each with its own
p-value from the same permutations. p = (1 + #{T_perm >= T_obs}) / (B + 1) (Phipson & Smyth
2010: never 0), with ties counted within a relative tolerance of 100 float64 eps, as
``scipy.stats.permutation_test`` does. When no bin reaches ``min_bin`` the test cannot run: its
statistic and p-values are NaN and ``ran`` is False; callers must report it as not run.

How the null is drawn. Within a bin, gap_k = |sum_j omega_j e_(j)| where slot j is the j-th rank
of the feature and omega_j its weight (gaps module). Permuting the feature over the members is
the same as assigning the members to the slots by a uniformly random permutation, so the feature
itself is never re-sorted: per permutation, a partial Fisher-Yates shuffle fills the slots of
non-zero weight (the top and bottom thirds, and tied slots that straddle their boundaries) with
uniform picks among the members not yet placed, and sums omega_j times the pick. That is exactly
uniform, ties or not, and costs one bounded random integer per weighted slot, where sorting random
keys costs a sort of the whole bin. It runs in C (``permutation_null.c``, built on first use by
:mod:`arcal.native`) on the random bits of one numpy SFC64 generator seeded from ``seed``, which
the bins draw from in turn.

With a single bin the null is scipy's unstratified ``permutation_test`` (tested); with bins it is
the within-group permutation of sklearn's ``permutation_test_score(groups=...)``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..native import library
from ._validate import check_int
from .confidence_map import cross_fitted_map
from .gaps import BinDesign, MatchedGaps, matched_gaps, validate_gap_inputs

METHODS: tuple[str, ...] = ("residualised", "within-bin")
"""Test methods: the default first; "within-bin" is the paper's test."""
CROSS_FIT_FOLDS = 5
_TIE_RTOL = 100 * float(np.finfo(np.float64).eps)
_KERNEL = Path(__file__).with_name("permutation_null.c")
_FLAGS = ("-O3", "-ffp-contract=off")


@dataclass(frozen=True)
class PermutationResult:
    """``statistic`` (= ``weighted_gap``), ``pvalue`` and the ``null`` statistics (length
    ``n_perm``); ``pvalue_max`` and ``null_max`` the same for the max gap. When no bin reaches
    ``min_bin`` the test did not run: ``ran`` is False, statistics and p-values are NaN and the
    nulls empty."""

    statistic: float
    pvalue: float
    null: np.ndarray = field(repr=False)
    n_perm: int
    max_gap: float
    weighted_gap: float
    n_bins_used: int
    gaps: MatchedGaps = field(repr=False)
    method: str = "residualised"
    pvalue_max: float = float("nan")
    null_max: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    @property
    def ran(self) -> bool:
        """Whether the test ran (at least one bin held ``min_bin`` examples)."""
        return self.n_bins_used > 0


def null_kernel():
    """The C kernel (permutation_null.c), built on first use (RuntimeError if it cannot be) and
    loaded once per process by :mod:`arcal.native`."""
    kernel = library(_KERNEL, _FLAGS).arcal_slot_sums
    kernel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                       ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    kernel.restype = None
    return kernel


def _bin_gaps(design: BinDesign, rows: int, rng: np.random.Generator) -> np.ndarray:
    """|sum_j omega_j e_sigma(j)| for ``rows`` independent uniform permutations sigma."""
    weighted = np.flatnonzero(design.omega)
    omega = np.ascontiguousarray(design.omega[weighted], dtype=np.float64)
    members = np.array(design.residuals, dtype=np.float64, order="C")  # the kernel shuffles it
    sums = np.empty(rows)
    bits = rng.bit_generator
    with bits.lock:  # numpy's rule for code that draws from a bit generator's C interface
        null_kernel()(bits.ctypes.bit_generator, members.ctypes.data, members.shape[0],
                     omega.ctypes.data, omega.shape[0], rows, sums.ctypes.data)
    return np.abs(sums)


def _pvalue(null: np.ndarray, observed: float) -> float:
    count = int(np.sum(null >= observed - _TIE_RTOL * abs(observed)))
    return (1.0 + count) / (null.shape[0] + 1.0)


def residual_reference(conf: np.ndarray, correct: np.ndarray, method: str, seed: int) -> np.ndarray:
    """What each example's correctness is compared with: c for "within-bin", the cross-fitted
    confidence-only map m(c) for "residualised" (folds seeded from ``seed``)."""
    if method == "within-bin":
        return conf
    fold_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    return cross_fitted_map(conf, correct, CROSS_FIT_FOLDS, fold_seed)


def permutation_test(
    conf: np.ndarray,
    correct: np.ndarray,
    feature: np.ndarray,
    n_bins: int = 15,
    min_bin: int = 30,
    n_perm: int = 10_000,
    seed: int = 0,
    method: str = "residualised",
) -> PermutationResult:
    """Within-bin permutation test of the weighted (and max) matched gap of ``feature``;
    ``method`` is "residualised" (default) or "within-bin" (the paper's; module docstring).

    Deterministic for a fixed ``seed``.
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown test {method!r}; use one of {METHODS}")
    c, z, r, n_bins, min_bin = validate_gap_inputs(conf, correct, feature, n_bins, min_bin)
    n_perm = check_int(n_perm, "n_perm", 1)
    check_int(seed, "seed", 0)
    reference = residual_reference(c, z, method, seed)
    gaps = matched_gaps(c, z, r, n_bins=n_bins, min_bin=min_bin, reference=reference)
    if gaps.n_bins_used == 0:
        nan = float("nan")
        return PermutationResult(nan, nan, np.empty(0), n_perm, nan, nan, 0, gaps, method)
    rng = np.random.Generator(np.random.SFC64(seed))  # the fastest raw bits numpy ships
    null, null_max = np.zeros(n_perm), np.zeros(n_perm)
    for design in gaps.designs:
        gap = _bin_gaps(design, n_perm, rng)
        null += design.weight * gap
        np.maximum(null_max, gap, out=null_max)
    return PermutationResult(
        gaps.weighted_gap, _pvalue(null, gaps.weighted_gap), null, n_perm, gaps.max_gap,
        gaps.weighted_gap, gaps.n_bins_used, gaps, method, _pvalue(null_max, gaps.max_gap),
        null_max,
    )


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
