"""Synthetic calibration/test splits with a routing trace, for the per-cell stages."""

import numpy as np
import pytest

from arcal.calibration import ProbeInputs



def synthetic_split(n: int, seed: int, k: int = 10, layers: int = 6) -> ProbeInputs:
    """A miscalibrated classifier (gaps of both signs) with routing features unrelated to z."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(n, k))
    logits[np.arange(n), rng.integers(k, size=n)] += 4.0
    true = logits / 2.0
    true[np.arange(n), logits.argmax(1)] += 1.5
    p = np.exp(true - true.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    H = rng.uniform(0.3, 1.0, size=(n, layers))
    return ProbeInputs(logits, labels, H, H.mean(1), rng.uniform(0.2, 1.0, size=n))


@pytest.fixture(scope="module")
def splits():
    return synthetic_split(1200, 0), synthetic_split(1200, 1)


@pytest.fixture(scope="module")
def make_split():
    return synthetic_split
