"""Calibration metrics (docs/methods.md, "Metrics").

All binned metrics use :mod:`arcal.calibration.binning` (15 equal-width bins by default, bin k
holds k/15 <= c < (k+1)/15, the last bin also holds c == 1). Top-label metrics take the
confidence c = max_j p_j and the correctness z = 1[argmax p = y]; multiclass metrics take the
full (N, K) probabilities and the labels.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._validate import as_binary, as_conf, as_feature, as_labels, as_probs, check_int
from .binning import bin_index, bin_sums
from .softmax import log_softmax

_EPS = float(np.finfo(np.float64).eps)


def _conf_correct(conf: object, correct: object) -> tuple[np.ndarray, np.ndarray]:
    c = as_conf(conf, "conf")
    return c, as_binary(correct, "correct", c.shape[0])


def _ece(c: np.ndarray, z: np.ndarray, n_bins: int) -> float:
    _, s_conf, s_corr = bin_sums(c, z, n_bins)
    return float(np.abs(s_corr - s_conf).sum() / c.shape[0])


def ece(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: sum_k (n_k / N) |acc_k - conf_k| over equal-width bins.

    Empty bins contribute 0.
    """
    c, z = _conf_correct(conf, correct)
    return _ece(c, z, check_int(n_bins, "n_bins", 1))


def mce(conf: np.ndarray, correct: np.ndarray, n_bins: int = 15, min_count: int = 5) -> float:
    """Maximum calibration error: max_k |acc_k - conf_k| over bins with n_k >= ``min_count``.

    Returns NaN when no bin holds ``min_count`` examples (the maximum is then undefined).
    ``min_count=1`` reproduces netcal's ``MCE`` (every non-empty bin).
    """
    c, z = _conf_correct(conf, correct)
    n_bins = check_int(n_bins, "n_bins", 1)
    min_count = check_int(min_count, "min_count", 1)
    count, s_conf, s_corr = bin_sums(c, z, n_bins)
    keep = count >= min_count
    if not keep.any():
        return float("nan")
    return float(np.max(np.abs(s_corr[keep] - s_conf[keep]) / count[keep]))


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Classwise ECE (Kull et al. 2019): mean over classes j of the binned ECE of p_j
    against 1[y = j], over all N examples and all K classes."""
    p = as_probs(probs, "probs")
    n, k = p.shape
    y = as_labels(labels, "labels", n, k)
    n_bins = check_int(n_bins, "n_bins", 1)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    flat = (bin_index(p.ravel(), n_bins).reshape(n, k) + n_bins * np.arange(k)).ravel()
    s_p = np.bincount(flat, weights=p.ravel(), minlength=n_bins * k)
    s_y = np.bincount(flat, weights=onehot.ravel(), minlength=n_bins * k)
    per_class = np.abs(s_y - s_p).reshape(k, n_bins).sum(axis=1) / n
    return float(per_class.mean())


def smooth_ece(conf: np.ndarray, correct: np.ndarray) -> float:
    """SmoothECE of Blasiok & Nakkiran (ICLR 2024) via the authors' ``relplot.smECE``
    (reflected Gaussian kernel, bandwidth at the fixed point sigma = smECE_sigma)."""
    c, z = _conf_correct(conf, correct)
    return float(_relplot_smece()(c, z))


@functools.cache
def _relplot_smece() -> Callable[[np.ndarray, np.ndarray], float]:
    """``relplot.smECE``, imported without running ``relplot/__init__.py`` unless relplot is
    already imported.

    The package's ``__init__`` imports its plotting half (matplotlib, seaborn, scikit-learn):
    0.8 s in each of the ~60 workflow jobs that report SmoothECE, which needs only
    ``relplot.metrics`` (numpy and scipy). The package object stands in while the submodule
    loads and is then removed, so a later ``import relplot`` runs ``__init__`` in full and reuses
    this same ``relplot.metrics``.
    """
    if "relplot" not in sys.modules:
        spec = importlib.util.find_spec("relplot")
        if spec is None:
            raise ModuleNotFoundError("SmoothECE needs relplot, one of arcal's pinned dependencies; "
                                      "run ./setup.sh (or pip install -e .)")
        sys.modules["relplot"] = importlib.util.module_from_spec(spec)
        try:
            importlib.import_module("relplot.metrics")
        finally:
            del sys.modules["relplot"]
    return sys.modules["relplot.metrics"].smECE


def nll_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass negative log-likelihood from logits, exactly: mean_i (logsumexp(l_i) - l_{i,y_i})
    in float64 (no cap: a confidently wrong model gets its full penalty). What arcal reports."""
    lp = log_softmax(logits)
    y = as_labels(labels, "labels", lp.shape[0], lp.shape[1])
    return float(-lp[np.arange(lp.shape[0]), y].mean())


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass negative log-likelihood from probabilities: mean_i -log p_{i, y_i} (p clipped
    below at float64 eps, as scikit-learn's ``log_loss`` does); prefer :func:`nll_logits`."""
    p = as_probs(probs, "probs")
    y = as_labels(labels, "labels", p.shape[0], p.shape[1])
    py = np.clip(p[np.arange(p.shape[0]), y], _EPS, 1.0)
    return float(-np.log(py).mean())


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean_i sum_j (p_ij - 1[y_i = j])^2 (range [0, 2], not halved)."""
    p = as_probs(probs, "probs")
    y = as_labels(labels, "labels", p.shape[0], p.shape[1])
    d = p.copy()
    d[np.arange(p.shape[0]), y] -= 1.0
    return float(np.mean(np.sum(d * d, axis=1)))


def binary_nll(conf: np.ndarray, correct: np.ndarray) -> float:
    """Binary NLL of a (recalibrated) top-label confidence c against correctness z:
    -mean(z log c + (1 - z) log(1 - c)), with c clipped to [eps, 1 - eps]."""
    c, z = _conf_correct(conf, correct)
    c = np.clip(c, _EPS, 1.0 - _EPS)
    return float(-np.mean(z * np.log(c) + (1.0 - z) * np.log1p(-c)))


def binary_brier(conf: np.ndarray, correct: np.ndarray) -> float:
    """Binary Brier score of a top-label confidence: mean (c - z)^2."""
    c, z = _conf_correct(conf, correct)
    return float(np.mean((c - z) ** 2))


@dataclass(frozen=True)
class TertileECE:
    """Worst-tertile ECE: ``worst`` = max of ``values`` (ECE inside each feature tertile,
    lowest tertile first); ``counts`` = examples per tertile."""

    worst: float
    values: tuple[float, float, float]
    counts: tuple[int, int, int]


def tertile_index(feature: np.ndarray) -> np.ndarray:
    """Tertile (0, 1, 2) of each example by its stable rank q (0-based, ties in order of
    appearance): floor(3 (q + 1/2) / N), i.e. the rank-transformed feature u = (q + 1/2) / N cut
    at 1/3 and 2/3. Equals a split at the 1/3 and 2/3 quantiles when the feature has no ties, and
    always gives tertiles whose sizes differ by at most one."""
    n = feature.shape[0]
    q = np.empty(n, dtype=np.int64)
    q[np.argsort(feature, kind="stable")] = np.arange(n)
    return (6 * q + 3) // (2 * n)


def tertile_ece(
    conf: np.ndarray, correct: np.ndarray, feature: np.ndarray, n_bins: int = 15
) -> TertileECE:
    """Worst-tertile ECE for ``feature`` (docs/methods.md, "Metrics"): split the examples into feature
    tertiles (see :func:`tertile_index`), compute the binned ECE inside each, report the maximum
    and the three values. Needs N >= 3."""
    c, z = _conf_correct(conf, correct)
    r = as_feature(feature, "feature", c.shape[0])
    n_bins = check_int(n_bins, "n_bins", 1)
    if c.shape[0] < 3:
        raise ValueError(f"conf: tertile ECE needs at least 3 examples, got {c.shape[0]}")
    t = tertile_index(r)
    values = tuple(_ece(c[t == g], z[t == g], n_bins) for g in range(3))
    counts = tuple(int(np.sum(t == g)) for g in range(3))
    return TertileECE(worst=max(values), values=values, counts=counts)  # type: ignore[arg-type]
