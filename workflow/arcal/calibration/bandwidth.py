"""Bandwidth rules for the Nadaraya-Watson probes (docs/methods.md, "Bandwidth rules").

Inputs are standardised (calibration-split mean and sample std, ddof = 1), so Scott's rule for a
diagonal product kernel, h_j = sigma_j n^(-1/(d+4)), is the same number n^(-1/(d+4)) on every
standardised axis; a rule then picks a multiplier of it:

* ``scott``: fixed multipliers {0.25, 0.5, 1, 2, 4} (``SCOTT_MULTIPLIERS``);
* ``cv-nll``: the multiplier of ``CV_MULTIPLIERS`` (13-point log grid 0.25 * 2^(i/3), 0.25..4)
  minimising the 5-fold cross-validated binary NLL on the calibration split, with predictions
  clipped to [1e-6, 1 - 1e-6] (the same guard the probe's output uses). Each fold's bandwidth is
  the multiplier times Scott's factor for the number of examples that fold is fitted on, so the
  chosen multiplier means the same thing when the probe is then fitted on the whole split;
* ``oracle``: the multiplier of ``CV_MULTIPLIERS`` minimising ECE on the *test* split. It peeks at
  test labels and is reported as an oracle wherever shown.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_int
from .kernel import nw_kfold_grid
from .logistic import clip_prob

SCOTT_MULTIPLIERS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
CV_MULTIPLIERS: tuple[float, ...] = tuple(float(0.25 * 2.0 ** (i / 3)) for i in range(13))
RULES: tuple[str, ...] = ("scott", "cv-nll", "oracle")


def scott_factor(n: int, d: int) -> float:
    """Scott's factor n^(-1/(d+4)) (the bandwidth on a unit-variance axis, multiplier 1)."""
    check_int(n, "n", 1)
    check_int(d, "d", 1)
    return float(n ** (-1.0 / (d + 4)))


def cv_nll_curve(
    x: np.ndarray, z: np.ndarray, multipliers: tuple[float, ...] = CV_MULTIPLIERS,
    k: int = 5, seed: int = 0,
) -> np.ndarray:
    """Mean K-fold binary NLL of the clipped NW predictions for each multiplier of Scott's
    bandwidth; ``x`` (n, d) standardised inputs, ``z`` (n,) 0/1 correctness."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    d = x.shape[1]
    p = clip_prob(nw_kfold_grid(x, z, lambda n_fit: scott_factor(n_fit, d), multipliers,
                                k=k, seed=seed))
    z = np.asarray(z, dtype=np.float64)
    return -np.mean(z * np.log(p) + (1.0 - z) * np.log1p(-p), axis=1)
