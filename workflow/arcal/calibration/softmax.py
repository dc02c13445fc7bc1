"""Softmax helpers: probabilities, top-label confidence and predictive entropy from logits.

Everything is computed in float64 through ``log_softmax`` so that NLL and entropy stay exact even
when a float32 softmax would saturate to exactly 1.0.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from ._validate import as_matrix


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64: l - logsumexp(l)."""
    z = as_matrix(logits, "logits")
    if z.shape[1] < 2:
        raise ValueError(f"logits: need at least 2 classes, got shape {z.shape}")
    return z - logsumexp(z, axis=1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    return np.exp(log_softmax(logits))


def predictive_entropy(log_probs: np.ndarray) -> np.ndarray:
    """H_pred = -sum_j p_j log p_j per row (nats), from log-probabilities (0 log 0 = 0)."""
    lp = np.asarray(log_probs, dtype=np.float64)
    p = np.exp(lp)
    return -np.sum(np.where(p > 0, p * lp, 0.0), axis=1)


def top_label(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence c = max_j p_j, prediction argmax_j p_j, predictive entropy) from logits."""
    lp = log_softmax(logits)
    pred = np.argmax(lp, axis=1)
    conf = np.exp(lp[np.arange(lp.shape[0]), pred])
    return conf, pred, predictive_entropy(lp)
