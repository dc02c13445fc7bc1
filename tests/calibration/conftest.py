"""Shared synthetic data for the calibration tests.

``main_set``: a 10-class model whose labels follow a tempered, shifted softmax, with per-bin
calibration gaps of both signs (underconfident middle bins, overconfident top bins), so binned
metrics that bin differently cannot agree by accident.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.special import softmax


@dataclass
class MainSet:
    logits: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    conf: np.ndarray
    correct: np.ndarray
    route: np.ndarray


def make_main_set(n: int = 5000, n_classes: int = 10, seed: int = 0) -> MainSet:
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(n, n_classes))
    logits[np.arange(n), rng.integers(0, n_classes, n)] += 4.0
    true = logits / 2.0
    true[np.arange(n), logits.argmax(1)] += 1.5
    p_true = softmax(true, axis=1)
    labels = np.array([rng.choice(n_classes, p=p) for p in p_true])
    probs = softmax(logits, axis=1)
    route = rng.uniform(0, 1, n)
    conf = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(float)
    return MainSet(logits, probs, labels, conf, correct, route)


@pytest.fixture(scope="session")
def main_set() -> MainSet:
    return make_main_set()
