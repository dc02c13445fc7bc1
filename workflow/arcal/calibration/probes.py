"""Recalibration probes (docs/methods.md, "Probes").

Each probe is fitted on the calibration split and maps a split's features to a recalibrated
top-label confidence in [0, 1]; the predicted class never changes. Interface::

    probe = make_probe("ar-condcal", rule="cv-nll")
    probe.fit(calib)                 # calib: ProbeInputs
    conf_hat = probe.predict(test)   # (N,) float64
    probe.n_params                   # fitted parameter count (reported next to the scores)
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import expit, logsumexp

from ._validate import check_int, check_positive
from .bandwidth import CV_MULTIPLIERS, RULES, cv_nll_curve, scott_factor
from .binning import bin_sums
from .inputs import ProbeInputs
from .kernel import nw_predict_grid
from .logistic import PROB_CLIP, clip_prob, fit_logistic, logit_conf


class Probe(ABC):
    """Base class: ``fit(train) -> self``, ``predict(inputs) -> conf_hat``, ``n_params``."""

    name: str = ""
    is_oracle: bool = False

    @abstractmethod
    def fit(self, train: ProbeInputs) -> "Probe": ...

    @abstractmethod
    def predict(self, inputs: ProbeInputs) -> np.ndarray: ...

    @property
    @abstractmethod
    def n_params(self) -> int: ...

    def _check_inputs(self, inputs: object, arg: str) -> ProbeInputs:
        if not isinstance(inputs, ProbeInputs):
            raise ValueError(f"{arg}: expected ProbeInputs, got {type(inputs).__name__}")
        return inputs

    def _check_fitted(self, attr: str) -> None:
        if getattr(self, attr, None) is None:
            raise ValueError(f"{self.name}: call fit(calibration inputs) before predict")


class RawProbe(Probe):
    """``raw``: the model's own confidence, unchanged (0 parameters)."""

    name = "raw"

    def fit(self, train: ProbeInputs) -> "RawProbe":
        self._check_inputs(train, "train")
        return self

    def predict(self, inputs: ProbeInputs) -> np.ndarray:
        return self._check_inputs(inputs, "inputs").conf.copy()

    @property
    def n_params(self) -> int:
        return 0


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T > 0 minimising the multiclass NLL of softmax(logits / T), in float64.

    Bounded Brent search over log T in [-10, 10] (``xatol`` = 64 eps, as scikit-learn's
    ``_TemperatureScaling``, which searches log(1/T)); log T keeps T positive and the problem
    one-dimensional and well-conditioned."""
    from scipy.optimize import minimize_scalar  # imported here: it costs 0.2 s to import

    z = np.asarray(logits, dtype=np.float64)
    zy = z[np.arange(z.shape[0]), labels]

    def loss(log_t: float) -> float:
        b = np.exp(-log_t)
        return float(np.mean(logsumexp(b * z, axis=1) - b * zy))

    res = minimize_scalar(loss, bounds=(-10.0, 10.0), method="bounded",
                          options={"xatol": 64 * np.finfo(np.float64).eps})
    return float(np.exp(res.x))


class TemperatureProbe(Probe):
    """``temperature``: conf = max softmax(logits / T), T fitted by NLL (1 parameter)."""

    name = "temperature"

    def __init__(self) -> None:
        self.temperature_: float | None = None

    def fit(self, train: ProbeInputs) -> "TemperatureProbe":
        train = self._check_inputs(train, "train")
        self.temperature_ = fit_temperature(train.logits, train.labels)
        return self

    def predict(self, inputs: ProbeInputs) -> np.ndarray:
        inputs = self._check_inputs(inputs, "inputs")
        self._check_fitted("temperature_")
        z = inputs.logits / self.temperature_
        return np.exp(np.max(z, axis=1) - logsumexp(z, axis=1))

    @property
    def n_params(self) -> int:
        return 1


class LinearConfProbe(Probe):
    """``linear-conf``: logistic regression of z on logit(c) (Platt-style), unpenalised maximum
    likelihood by Newton's method; c clipped to [1e-12, 1 - 1e-12] before the logit. With a
    single outcome class (all correct or all wrong) the MLE does not exist; the probe then
    predicts the (clipped) constant rate. Output clipped to [1e-6, 1 - 1e-6]. 2 parameters."""

    name = "linear-conf"

    def __init__(self, max_iter: int = 100) -> None:
        self.max_iter = max_iter
        self.coef_: np.ndarray | None = None

    def fit(self, train: ProbeInputs) -> "LinearConfProbe":
        train = self._check_inputs(train, "train")
        x, z = logit_conf(train.conf, 1e-12), train.correct
        if z.min() == z.max():
            self.coef_ = np.array([float(logit_conf(z[0], PROB_CLIP)), 0.0])
            return self
        self.coef_ = fit_logistic(np.column_stack([np.ones_like(x), x]), z, max_iter=self.max_iter)
        return self

    def predict(self, inputs: ProbeInputs) -> np.ndarray:
        inputs = self._check_inputs(inputs, "inputs")
        self._check_fitted("coef_")
        return clip_prob(expit(self.coef_[0] + self.coef_[1] * logit_conf(inputs.conf, 1e-12)))

    @property
    def n_params(self) -> int:
        return 2


def _ece_rows(p: np.ndarray, z: np.ndarray, n_bins: int) -> np.ndarray:
    """``n_bins``-bin ECE of each row of p (G, N) against z."""
    out = np.empty(p.shape[0])
    for g in range(p.shape[0]):
        _, s_conf, s_corr = bin_sums(p[g], z, n_bins)
        out[g] = np.abs(s_corr - s_conf).sum() / z.shape[0]
    return out


class NWProbe(Probe):
    """Nadaraya-Watson probe of P(z = 1 | c, aux): Gaussian product kernel on inputs standardised
    with the calibration split's mean and sample std (a constant input keeps std 1, i.e. it is
    ignored), bandwidth = multiplier x Scott's n^(-1/(d+4)) on every axis, output clipped to
    [1e-6, 1 - 1e-6]. ``rule``: "scott" (use ``multiplier``), "cv-nll" (choose from ``grid`` by
    ``n_folds``-fold CV-NLL on the calibration split) or "oracle" (choose from ``grid`` by ECE on
    the inputs given to ``predict``: peeks at their labels; ``n_bins`` equal-width bins).
    ``n_params`` = number of bandwidths (d; the probe is non-parametric).
    """

    def __init__(self, name: str, features: tuple[str, ...], rule: str = "scott",
                 multiplier: float = 1.0, grid: tuple[float, ...] = CV_MULTIPLIERS,
                 n_folds: int = 5, seed: int = 0, n_bins: int = 15) -> None:
        if rule not in RULES:
            raise ValueError(f"rule: unknown bandwidth rule {rule!r}; use one of {RULES}")
        self.name = name
        self.features = features
        self.rule = rule
        self.multiplier = check_positive(multiplier, "multiplier")
        self.grid = tuple(check_positive(m, "grid") for m in grid)
        self.n_folds = n_folds
        self.seed = seed
        self.n_bins = check_int(n_bins, "n_bins", 1)
        self.is_oracle = rule == "oracle"
        self.x_: np.ndarray | None = None
        self.cv_nll_: np.ndarray | None = None
        self.multiplier_: float | None = None

    def design(self, inputs: ProbeInputs) -> np.ndarray:
        """Raw (unstandardised) input matrix (N, d) in the order of ``features``."""
        return np.column_stack([inputs.feature(f) for f in self.features])

    def standardise(self, inputs: ProbeInputs) -> np.ndarray:
        self._check_fitted("x_")
        return (self.design(inputs) - self.mean_) / self.scale_

    def fit(self, train: ProbeInputs) -> "NWProbe":
        train = self._check_inputs(train, "train")
        if train.n < 2:
            raise ValueError(f"train: {self.name} needs at least 2 calibration examples")
        x = self.design(train)
        self.mean_ = x.mean(axis=0)
        sd = x.std(axis=0, ddof=1)
        self.scale_ = np.where(sd > 0, sd, 1.0)
        self.x_ = (x - self.mean_) / self.scale_
        self.z_ = train.correct
        self.h_ = scott_factor(train.n, x.shape[1])
        if self.rule == "scott":
            self.multiplier_ = self.multiplier
        elif self.rule == "cv-nll":
            self.cv_nll_ = cv_nll_curve(self.x_, self.z_, self.grid, k=self.n_folds, seed=self.seed)
            self.multiplier_ = self.grid[int(np.argmin(self.cv_nll_))]
        return self

    def predict_grid(
        self,
        inputs: ProbeInputs,
        multipliers: tuple[float, ...],
        targets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Clipped predictions (len(multipliers), N) for several multipliers at once.

        ``targets`` (n_train, m) replaces the fitted correctness by m labellings of the same
        training inputs; they share one kernel pass and the result is (len(multipliers), m, N).
        """
        inputs = self._check_inputs(inputs, "inputs")
        y = self.z_ if targets is None else targets
        p = nw_predict_grid(self.x_, y, self.standardise(inputs), self.h_, multipliers)
        return clip_prob(p)

    def predict(self, inputs: ProbeInputs) -> np.ndarray:
        if self.rule == "oracle":
            p = self.predict_grid(inputs, self.grid)
            best = int(np.argmin(_ece_rows(p, inputs.correct, self.n_bins)))
            self.multiplier_ = self.grid[best]
            return p[best]
        self._check_fitted("multiplier_")
        return self.predict_grid(inputs, (self.multiplier_,))[0]

    @property
    def n_params(self) -> int:
        return len(self.features)
