"""What a probe sees: logits and labels of one split, plus optional routing features."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ._validate import as_feature, as_labels, as_matrix
from .softmax import log_softmax, predictive_entropy


@dataclass(frozen=True, eq=False)
class ProbeInputs:
    """One split's model outputs. ``logits`` (N, K), ``labels`` (N,), and optional routing
    features: ``H`` (N, L) per-consumer routing entropies, ``r_agg`` (N,) and ``depth_var`` (N,).
    Routing features must be finite when given; pass None for a model without a routing trace
    (baseline dumps store all-NaN ``r_agg``/``depth_var``; :meth:`from_dump` maps them to None).

    Derived quantities are float64 and computed once from ``log_softmax(logits)``.
    """

    logits: np.ndarray
    labels: np.ndarray
    H: np.ndarray | None = None
    r_agg: np.ndarray | None = None
    depth_var: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits = as_matrix(self.logits, "logits")
        if logits.shape[0] < 1 or logits.shape[1] < 2:
            raise ValueError(f"logits: need N >= 1 rows and K >= 2 classes, got {logits.shape}")
        n, k = logits.shape
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", as_labels(self.labels, "labels", n, k))
        if self.H is not None:
            H = as_matrix(self.H, "H", n)
            object.__setattr__(self, "H", H if H.shape[1] > 0 else None)
        for name in ("r_agg", "depth_var"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_feature(value, name, n))

    @classmethod
    def from_dump(cls, dump: Any) -> "ProbeInputs":
        """Build from an object with attributes logits, labels, H, r_agg, depth_var (an
        ``arcal.io.Dump``); all-NaN features and L = 0 routing matrices become None."""

        def feature(name: str) -> np.ndarray | None:
            value = getattr(dump, name, None)
            if value is None:
                return None
            arr = np.asarray(value, dtype=np.float64)
            return None if arr.size == 0 or np.isnan(arr).all() else arr

        return cls(np.asarray(dump.logits), np.asarray(dump.labels), feature("H"),
                   feature("r_agg"), feature("depth_var"))

    @property
    def n(self) -> int:
        return int(self.logits.shape[0])

    @cached_property
    def log_probs(self) -> np.ndarray:
        return log_softmax(self.logits)

    @cached_property
    def probs(self) -> np.ndarray:
        return np.exp(self.log_probs)

    @cached_property
    def pred(self) -> np.ndarray:
        return np.argmax(self.logits, axis=1)

    @cached_property
    def conf(self) -> np.ndarray:
        """Top-label confidence c = max_j p_j."""
        return np.exp(self.log_probs[np.arange(self.n), self.pred])

    @cached_property
    def correct(self) -> np.ndarray:
        """z = 1[argmax p = y] as float64 0/1."""
        return (self.pred == self.labels).astype(np.float64)

    @cached_property
    def entropy(self) -> np.ndarray:
        """Predictive entropy H_pred = -sum_j p_j log p_j (nats)."""
        return predictive_entropy(self.log_probs)

    def feature(self, name: str) -> np.ndarray:
        """A named scalar input: conf, entropy, r_agg or depth_var."""
        if name == "conf":
            return self.conf
        if name == "entropy":
            return self.entropy
        if name in ("r_agg", "depth_var"):
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"{name}: this split has no routing feature {name!r} "
                                 "(baseline model?); routing probes need it")
            return value
        raise ValueError(f"feature: unknown name {name!r}; use conf, entropy, r_agg or depth_var")
