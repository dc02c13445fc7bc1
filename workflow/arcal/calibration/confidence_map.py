"""A smooth confidence-only calibration map m(c) = P(z = 1 | c), and its cross-fitted values.

Used where the study must remove what confidence alone explains about correctness before asking
whether a routing feature adds anything (docs/methods.md, "Residualised within-bin test" and
"Planted control"):

* the residualised permutation test compares z - m(c) instead of z - c, so a miscalibration that
  changes inside a confidence bin cannot masquerade as a routing effect;
* the planted control draws synthetic correctness around m(c) fitted on the calibration split, so
  the null keeps the model's real miscalibration.

The map is a logistic regression of z on a restricted (natural) cubic spline of logit(c)
(Harrell, *Regression Modeling Strategies*, 2.4.5): five knots at the 5, 27.5, 50, 72.5 and 95 %
quantiles of logit(c), linear beyond the outer knots, so it follows the curved reliability
diagrams of real models (c^gamma, tempered softmaxes) with 5 coefficients and no bandwidth to
choose. c is clipped to [1e-6, 1 - 1e-6] before the logit (softmax outputs saturate to 1 in
single precision). Coinciding knots (heavily tied confidences) are merged; with fewer than three
distinct knots the map is logistic in logit(c). A ridge penalty of ``RIDGE`` on the coefficients
keeps the fit finite when a fold is separable (all correct, say), and predictions are clipped to
[1e-6, 1 - 1e-6].
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from ._validate import as_binary, as_conf, check_int
from .kernel import kfold_ids
from .logistic import PROB_CLIP, clip_prob, fit_logistic, logit_conf

KNOT_QUANTILES: tuple[float, ...] = (0.05, 0.275, 0.5, 0.725, 0.95)
RIDGE = 1e-6


def spline_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis (n, len(knots) - 1): x and len(knots) - 2 cubic terms that
    are linear beyond the outer knots (scaled by the squared knot span to keep columns O(1))."""
    t = np.asarray(knots, dtype=np.float64)
    cols = [x]
    span = t[-1] - t[-2]

    def cube(u: np.ndarray) -> np.ndarray:
        u = np.maximum(u, 0.0)
        return u * u * u

    for tj in t[:-2]:
        cols.append((cube(x - tj) - cube(x - t[-2]) * (t[-1] - tj) / span
                     + cube(x - t[-1]) * (t[-2] - tj) / span) / (t[-1] - t[0]) ** 2)
    return np.column_stack(cols)


class ConfidenceMap:
    """m(c): spline-logistic calibration map of correctness on confidence (module docstring)."""

    def __init__(self) -> None:
        self.knots_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None

    def _design(self, conf: np.ndarray) -> np.ndarray:
        x = logit_conf(conf, PROB_CLIP)
        assert self.knots_ is not None
        if self.knots_.size >= 3:
            basis = spline_basis(x, self.knots_)
        elif self.knots_.size == 2:
            basis = x[:, None]
        else:
            basis = np.empty((x.shape[0], 0))
        return np.column_stack([np.ones_like(x), basis])

    def fit(self, conf: np.ndarray, correct: np.ndarray,
            knots: np.ndarray | None = None, start: np.ndarray | None = None) -> "ConfidenceMap":
        """Fit on confidences ``conf`` (N,) and 0/1 correctness ``correct`` (N,). ``knots``
        overrides the quantile knots and ``start`` the optimiser's initial coefficients (both
        used by :func:`cross_fitted_map` to fit the folds from the whole split's solution)."""
        c = as_conf(conf, "conf")
        z = as_binary(correct, "correct", c.shape[0])
        self.knots_ = (np.unique(np.quantile(logit_conf(c, PROB_CLIP), KNOT_QUANTILES))
                       if knots is None else knots)
        design = self._design(c)
        if start is None:  # m(c) = c, a calibrated model, is a close start for real ones
            start = np.zeros(design.shape[1])
            start[1:2] = 1.0
        self.coef_ = fit_logistic(design, z, ridge=RIDGE, start=start)
        return self

    def predict(self, conf: np.ndarray) -> np.ndarray:
        """m(c) at ``conf``, clipped to [1e-6, 1 - 1e-6] (a separable fit saturates)."""
        if self.coef_ is None:
            raise ValueError("ConfidenceMap: call fit() before predict()")
        return clip_prob(expit(self._design(as_conf(conf, "conf")) @ self.coef_))


def cross_fitted_map(
    conf: np.ndarray, correct: np.ndarray, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold m(c): each example's value comes from a map fitted on the other folds
    (folds of :func:`arcal.calibration.kernel.kfold_ids`), so an example's own outcome does not
    enter its reference value. The knots are the whole split's quantiles (they use c only, never
    z), and each fold's fit starts from the whole split's coefficients so that it converges in two
    or three Newton steps; the start touches the result only within the optimiser's tolerance
    (values move by about 1e-8)."""
    c = as_conf(conf, "conf")
    z = as_binary(correct, "correct", c.shape[0])
    folds = check_int(folds, "folds", 2)
    ids = kfold_ids(c.shape[0], folds, seed)
    whole = ConfidenceMap().fit(c, z)
    out = np.empty(c.shape[0])
    for f in range(folds):
        held = ids == f
        fold = ConfidenceMap().fit(c[~held], z[~held], knots=whole.knots_, start=whole.coef_)
        out[held] = fold.predict(c[held])
    return out
