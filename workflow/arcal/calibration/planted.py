"""Planted routing-conditional signal (DESIGN section 2, "Planted control").

Synthetic correctness z' ~ Bernoulli(clip(c + delta * s(r), 0, 1)), with s the centred, scaled
rank of the feature r:

    s_i = (2 rank_i - 1) / N - 1,   rank_i in 1..N the average rank (ties share a rank),

so s lies in (-1, 1), has mean 0, is uniform over the examples when r has no ties, and is 0 for
every example when r is constant. delta = 0 gives a perfectly calibrated null
(E[z' | c, r] = c), the setting in which the permutation test must hold its size; delta != 0
shifts P(z' = 1) by up to |delta| in opposite directions for low- and high-r examples.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ._validate import as_conf, as_feature


def centred_rank(feature: np.ndarray) -> np.ndarray:
    """s = (2 rank - 1) / N - 1 with average ranks (ties share a rank)."""
    r = np.asarray(feature, dtype=np.float64)
    return (2.0 * rankdata(r, method="average") - 1.0) / r.shape[0] - 1.0


def planted_correctness(
    conf: np.ndarray, feature: np.ndarray, delta: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw z' (float64 0/1) ~ Bernoulli(clip(c + delta * s(r), 0, 1)); see the module docstring."""
    c = as_conf(conf, "conf")
    r = as_feature(feature, "feature", c.shape[0])
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise ValueError(f"delta: expected a number, got {delta!r}") from None
    if not np.isfinite(d) or abs(d) > 1:
        raise ValueError(f"delta: must be finite with |delta| <= 1, got {delta!r}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng: expected numpy.random.Generator, got {type(rng).__name__}")
    p = np.clip(c + d * centred_rank(r), 0.0, 1.0)
    return (rng.random(c.shape[0]) < p).astype(np.float64)
