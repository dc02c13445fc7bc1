"""What a probe sees: logits and labels of one split, plus optional routing features."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ._validate import as_feature, as_labels, as_matrix
from .softmax import log_softmax, predictive_entropy

#: Scalar features every split has (derived from the logits) or carries in its own fields.
BUILTIN_FEATURES: tuple[str, ...] = ("conf", "entropy", "r_agg", "depth_var")
#: Names an extra feature may not take: the built-ins, and "ragg", whose NW probe name
#: ("nw-ragg") already means the probe on r_agg.
RESERVED_FEATURES: frozenset[str] = frozenset({*BUILTIN_FEATURES, "ragg"})
#: A feature or matrix name: a letter, then letters, digits or underscores (it becomes part of
#: probe names such as ``nw-<feature>`` and score names such as ``tertile_ece_<feature>``).
NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def check_name(name: object, what: str) -> str:
    """A valid feature or matrix name (NAME_PATTERN), else ValueError naming it."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{what} {name!r}: names must start with a letter and hold only letters, "
                         "digits and underscores")
    return name


@dataclass(frozen=True, eq=False)
class ProbeInputs:
    """One split's model outputs. ``logits`` (N, K), ``labels`` (N,), and optional routing
    features: ``H`` (N, L) per-consumer routing entropies, ``r_agg`` (N,) and ``depth_var`` (N,).
    Routing features must be finite when given; pass None for a model without a routing trace
    (baseline dumps store all-NaN ``r_agg``/``depth_var``; :meth:`from_dump` maps them to None).

    Any other model-internal trace comes in by name, so the suite can audit models arcal did not
    train: ``extra`` maps names to (N,) scalar features (served by :meth:`feature` like r_agg),
    ``matrices`` maps names to (N, L) per-layer matrices (served by :meth:`matrix` like H; the
    capacity audit's MLPs read one). Names follow NAME_PATTERN; extra features may not take a
    RESERVED_FEATURES name and matrices may not be called "H" (the field).

    Derived quantities are float64 and computed once from ``log_softmax(logits)``.
    """

    logits: np.ndarray
    labels: np.ndarray
    H: np.ndarray | None = None
    r_agg: np.ndarray | None = None
    depth_var: np.ndarray | None = None
    extra: Mapping[str, np.ndarray] | None = None
    matrices: Mapping[str, np.ndarray] | None = None

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
        extra = {}
        for name, value in (self.extra or {}).items():
            if check_name(name, "extra feature") in RESERVED_FEATURES:
                raise ValueError(f"extra feature {name!r}: the name is reserved "
                                 f"({', '.join(sorted(RESERVED_FEATURES))}); rename it")
            extra[name] = as_feature(value, name, n)
        matrices = {}
        for name, value in (self.matrices or {}).items():
            if check_name(name, "matrix") == "H":
                raise ValueError("matrix 'H': pass the per-consumer routing entropies as H=")
            m = as_matrix(value, name, n)
            if m.shape[1] == 0:
                raise ValueError(f"{name}: a per-layer matrix needs at least one column")
            matrices[name] = m
        object.__setattr__(self, "extra", extra)
        object.__setattr__(self, "matrices", matrices)

    @classmethod
    def from_dump(cls, dump: Any) -> "ProbeInputs":
        """Build from an object with attributes logits, labels, H, r_agg, depth_var (an
        ``arcal.io.Dump``); all-NaN features and L = 0 routing matrices become None. A dump's
        attention trace, when it has one, comes along as the extra feature ``attn_entropy`` and
        the matrix ``A``."""

        def feature(name: str) -> np.ndarray | None:
            value = getattr(dump, name, None)
            if value is None:
                return None
            arr = np.asarray(value, dtype=np.float64)
            return None if arr.size == 0 or np.isnan(arr).all() else arr

        attention = feature("attn_entropy")
        A = feature("A")
        return cls(np.asarray(dump.logits), np.asarray(dump.labels), feature("H"),
                   feature("r_agg"), feature("depth_var"),
                   extra=None if attention is None else {"attn_entropy": attention},
                   matrices=None if A is None else {"A": A})

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

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The auxiliary scalar features this split carries: r_agg and depth_var when given,
        then the extra features in their order."""
        own = tuple(f for f in ("r_agg", "depth_var") if getattr(self, f) is not None)
        return own + tuple(self.extra)

    def feature(self, name: str) -> np.ndarray:
        """A named scalar input: conf, entropy, r_agg, depth_var or an extra feature."""
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
        if name in self.extra:
            return self.extra[name]
        known = ", ".join(("conf", "entropy", *self.feature_names))
        raise ValueError(f"feature: unknown name {name!r}; this split has {known}")

    def matrix(self, name: str) -> np.ndarray | None:
        """A named per-layer matrix (N, L): "H" (the routing entropies; None when the split has
        none) or one of ``matrices``; an unknown name is an error."""
        if name == "H":
            return self.H
        if name in self.matrices:
            return self.matrices[name]
        known = ", ".join(["H", *self.matrices])
        raise ValueError(f"matrix: unknown name {name!r}; this split has {known}")
