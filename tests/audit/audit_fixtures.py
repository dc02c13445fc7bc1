"""Helpers of the audit tests (importable by name, unlike conftest.py)."""

from __future__ import annotations

import numpy as np


def generic_arrays(n: int = 800, k: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid one-file audit input: logits, labels, a split column, two features, a matrix."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (n, k))
    labels = np.where(rng.random(n) < 0.6, logits.argmax(1), rng.integers(0, k, n))
    return {
        "logits": logits, "labels": labels,
        "split": np.where(np.arange(n) % 2 == 0, "calib", "test"),
        "router": rng.random(n), "depth": rng.normal(size=n),
        "layers": rng.random((n, 3)),
    }
