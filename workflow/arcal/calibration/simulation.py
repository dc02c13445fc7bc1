"""Synthetic datasets for the size-and-power study of the within-bin tests (docs/methods.md,
"Permutation tests"; ``bench/size_power.py`` and the tests use the same generator).

The nulls are the ones a sceptical reviewer would build: the model is miscalibrated, and the
feature tracks confidence *inside* the confidence bins, yet carries nothing beyond c.

Miscalibration shapes (``SHAPES``):

* ``gamma1``, ``gamma2``, ``gamma3``: c ~ 0.1 + 0.9 Beta(5, 1.2) and P(z = 1 | c) = c^gamma
  (gamma = 1 is a calibrated model; 3 a strongly curved, overconfident reliability diagram);
* ``overconfident``, ``underconfident``: K = 10 logits l, the model reports softmax(l) but the
  labels follow softmax(tau l) with tau = 0.6 (overconfident model) or 1.6 (underconfident);
  P(z = 1) is the true probability of the predicted class.

Features (``FEATURES``): ``independent`` (standard normal, the easy null) or c + N(0, sd^2)
with sd = 0.05, 0.02, 0.01 (``low``, ``medium``, ``high`` correlation with c inside a bin
1/15 wide, where c itself has a standard deviation of about 0.02).

Effects: ``effect`` > 0 plants a routing-conditional signal on the logit scale around the true
P(z = 1 | ...) with :func:`arcal.calibration.planted.planted_probability` and solves for the
logit size delta whose achieved within-bin effect (top-minus-bottom-third accuracy beyond the
true probability at matched confidence, :func:`~arcal.calibration.planted.achieved_effect`)
equals ``effect``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit, softmax

from .gaps import third_contrast_weights
from .logistic import clip_prob
from .planted import achieved_effect, planted_probability, within_bin_rank

SHAPES: tuple[str, ...] = ("gamma1", "gamma2", "gamma3", "overconfident", "underconfident")
FEATURES: dict[str, float | None] = {"independent": None, "low": 0.05, "medium": 0.02,
                                     "high": 0.01}
TEMPERATURES = {"overconfident": 0.6, "underconfident": 1.6}


@dataclass(frozen=True)
class SimulatedSet:
    """One synthetic dataset: confidence, 0/1 correctness, feature, the true P(z = 1) and the
    planted logit size with its achieved within-bin effect (0 and 0 for a null)."""

    conf: np.ndarray
    correct: np.ndarray
    feature: np.ndarray
    prob: np.ndarray
    delta: float
    achieved: float


def _confidence_and_truth(n: int, shape: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if shape.startswith("gamma"):
        c = 0.1 + 0.9 * rng.beta(5.0, 1.2, n)
        return c, c ** float(shape.removeprefix("gamma"))
    k = 10
    logits = 1.5 * rng.normal(size=(n, k))
    logits[np.arange(n), rng.integers(0, k, n)] += rng.uniform(0.0, 6.0, n)
    probs = softmax(logits, axis=1)
    pred = probs.argmax(axis=1)
    truth = softmax(TEMPERATURES[shape] * logits, axis=1)[np.arange(n), pred]
    return probs.max(axis=1), truth


def simulate(
    n: int, shape: str, feature: str, rng: np.random.Generator, effect: float = 0.0,
    n_bins: int = 15, min_bin: int = 30,
) -> SimulatedSet:
    """A dataset of ``n`` examples of miscalibration ``shape`` with a ``feature`` of the given
    correlation with confidence, and a planted within-bin effect of size ``effect`` (module
    docstring)."""
    if shape not in SHAPES:
        raise ValueError(f"shape: unknown {shape!r}; use one of {SHAPES}")
    if feature not in FEATURES:
        raise ValueError(f"feature: unknown {feature!r}; use one of {tuple(FEATURES)}")
    c, p = _confidence_and_truth(n, shape, rng)
    sd = FEATURES[feature]
    r = rng.normal(size=n) if sd is None else c + sd * rng.normal(size=n)
    delta, achieved = 0.0, 0.0
    if effect > 0:
        # achieved_effect(delta) = w @ (p'(delta) - p): weights and ranks computed once
        w = third_contrast_weights(c, r, n_bins, min_bin)
        s = within_bin_rank(c, r, n_bins)
        lp = logit(clip_prob(p))
        lo, hi = 0.0, 20.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if w @ (expit(lp + mid * s) - p) < effect:
                lo = mid
            else:
                hi = mid
        delta = 0.5 * (lo + hi)
        p_planted = planted_probability(p, c, r, delta, n_bins)
        achieved = achieved_effect(p, p_planted, c, r, n_bins, min_bin)
        p = p_planted
    z = (rng.random(n) < p).astype(np.float64)
    return SimulatedSet(c, z, r, p, delta, achieved)
