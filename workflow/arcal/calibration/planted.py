"""Planted routing-conditional signal (docs/methods.md, "Planted control").

Synthetic correctness with a routing effect of known size, around a *realistic* null:

    z' ~ Bernoulli(p'),   logit p' = logit m(c) + delta * s,

where m is a confidence-only calibration map of the real model (fitted on the calibration split,
:class:`arcal.calibration.confidence_map.ConfidenceMap`) and s in (-1, 1) is the centred rank of
the routing feature r *inside its confidence bin*:

    s_i = (2 rank_i - 1) / n_k - 1,   rank_i in 1..n_k the average rank of r_i in bin k.

So delta = 0 keeps the model's real miscalibration (z' depends on c only, through m), the effect
lives where the tests look (within confidence bins) and is applied on the logit scale, so it
never needs clipping. Because m and the bins absorb part of any effect that moves with c, the
nominal delta (logit units) is not the effect a test sees; :func:`achieved_effect` measures it
as the matched-confidence contrast of p' - m(c) between the top and bottom thirds of r.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit, logit

from ._validate import as_conf, as_feature, check_int
from .binning import bin_index
from .gaps import third_contrast
from .logistic import clip_prob


def within_bin_rank(conf: np.ndarray, feature: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """s = (2 rank - 1) / n_k - 1 of the feature inside each confidence bin (average ranks, so
    ties share a value; a constant feature gives 0)."""
    from scipy.stats import rankdata  # imported here: scipy.stats costs 0.3 s to import

    c = as_conf(conf, "conf")
    r = as_feature(feature, "feature", c.shape[0])
    idx = bin_index(c, check_int(n_bins, "n_bins", 1))
    s = np.zeros(c.shape[0])
    for k in np.unique(idx):
        members = idx == k
        s[members] = (2.0 * rankdata(r[members], method="average") - 1.0) / members.sum() - 1.0
    return s


def planted_probability(
    base: np.ndarray, conf: np.ndarray, feature: np.ndarray, delta: float, n_bins: int = 15
) -> np.ndarray:
    """p' = expit(logit(base) + delta * s), s the within-bin centred rank (module docstring);
    ``base`` (the confidence-only map's values) is clipped to [1e-6, 1 - 1e-6] first."""
    c = as_conf(conf, "conf")
    b = as_conf(base, "base", c.shape[0])
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise ValueError(f"delta: expected a number, got {delta!r}") from None
    if not np.isfinite(d):
        raise ValueError(f"delta: must be finite (logit units), got {delta!r}")
    s = within_bin_rank(c, feature, n_bins)
    return expit(logit(clip_prob(b)) + d * s)


def planted_correctness(
    base: np.ndarray, conf: np.ndarray, feature: np.ndarray, delta: float,
    rng: np.random.Generator, n_bins: int = 15,
) -> np.ndarray:
    """Draw z' (float64 0/1) ~ Bernoulli(:func:`planted_probability`)."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected numpy.random.Generator, got {type(rng).__name__}")
    p = planted_probability(base, conf, feature, delta, n_bins)
    return (rng.random(p.shape[0]) < p).astype(np.float64)


def achieved_effect(
    base: np.ndarray, planted: np.ndarray, conf: np.ndarray, feature: np.ndarray,
    n_bins: int = 15, min_bin: int = 30,
) -> float:
    """The within-bin effect a test can see: top-minus-bottom-third difference of the planted
    accuracy p' beyond the confidence-only map, p' - base, at matched confidence (bins with at
    least ``min_bin`` examples, weighted by size; :func:`arcal.calibration.gaps.third_contrast`)."""
    p = as_conf(planted, "planted")
    b = as_conf(base, "base", p.shape[0])
    return third_contrast(conf, p - b, feature, n_bins, min_bin)
