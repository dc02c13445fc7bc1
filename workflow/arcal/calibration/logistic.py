"""Logistic regression by Newton's method, shared by the linear-conf probe and the confidence map.

Small designs (a handful of columns), so a full Newton step with step halving converges in a few
iterations and needs no tuning; an optional ridge penalty keeps separable fits finite.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

PROB_CLIP = 1e-6
"""Probabilities are kept in [PROB_CLIP, 1 - PROB_CLIP] where a logit or a log loss is taken of
them (probe outputs, planted and simulated probabilities, the confidence map's input and output)."""


def clip_prob(p: np.ndarray) -> np.ndarray:
    """``p`` clipped to [PROB_CLIP, 1 - PROB_CLIP]."""
    return np.clip(p, PROB_CLIP, 1.0 - PROB_CLIP)


def logit_conf(conf: np.ndarray, clip: float) -> np.ndarray:
    """logit(c) with c clipped to [clip, 1 - clip] (softmax confidences can be exactly 1)."""
    c = np.clip(conf, clip, 1.0 - clip)
    return np.log(c) - np.log1p(-c)


def fit_logistic(X: np.ndarray, z: np.ndarray, ridge: float = 0.0, max_iter: int = 100,
                 start: np.ndarray | None = None) -> np.ndarray:
    """Coefficients w minimising sum(log(1 + e^{Xw}) - z Xw) + ridge/2 |w|^2 (X holds the
    intercept column), from ``start`` (default 0). Newton steps, halved until the loss does not
    increase; stops when the Newton decrement g.H^-1.g falls below 1e-12 per example (the mean
    loss is then within about that of its minimum: coefficients within ~1e-6 of it, predictions
    closer), when a step moves no coefficient by more than 1e-12, or when no decrease is found."""
    w = np.zeros(X.shape[1]) if start is None else np.array(start, dtype=np.float64)
    penalty = ridge * np.eye(X.shape[1]) + 1e-12 * np.eye(X.shape[1])

    def loss(w: np.ndarray, eta: np.ndarray) -> float:
        return float(np.sum(np.logaddexp(0.0, eta) - z * eta) + 0.5 * ridge * w @ w)

    eta = X @ w
    current = loss(w, eta)
    for _ in range(max_iter):
        p = expit(eta)
        grad = X.T @ (p - z) + ridge * w
        hess = (X * (p * (1.0 - p))[:, None]).T @ X + penalty
        step = np.linalg.solve(hess, grad)
        if grad @ step < 1e-12 * X.shape[0]:
            break
        t = 1.0
        while t > 1e-10:
            cand = w - t * step
            cand_eta = X @ cand
            value = loss(cand, cand_eta)
            if value <= current:
                break
            t /= 2
        else:
            break
        w, eta, current = cand, cand_eta, value
        if np.max(np.abs(t * step)) < 1e-12:
            break
    return w
