"""Input validation shared by the calibration functions.

Every check raises ``ValueError`` naming the argument and the problem, so a bad dump or a
mis-wired stage fails loudly at the boundary instead of producing a silently wrong number.
"""

from __future__ import annotations

import numpy as np


def _finite_float_array(x: object, name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float array ({exc})") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(
            f"{name}: {int(bad.sum())} non-finite value(s) (NaN or inf); remove or repair them"
        )
    return arr


def as_conf(x: object, name: str = "conf", n: int | None = None) -> np.ndarray:
    """1-D float64 confidences in [0, 1]."""
    arr = _finite_float_array(x, name, 1)
    if arr.size == 0:
        raise ValueError(f"{name}: empty array; at least one example is needed")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: length {arr.shape[0]} does not match the other inputs ({n})")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"{name}: values must lie in [0, 1], got min {arr.min():.6g} and max {arr.max():.6g}"
        )
    return arr


def as_binary(x: object, name: str, n: int) -> np.ndarray:
    """1-D float64 array of 0/1 outcomes of length n (bool, int or float input)."""
    arr = _finite_float_array(x, name, 1)
    if arr.shape[0] != n:
        raise ValueError(f"{name}: length {arr.shape[0]} does not match the other inputs ({n})")
    if not np.isin(arr, (0.0, 1.0)).all():
        raise ValueError(f"{name}: values must be 0/1 (or bool), got {np.unique(arr)[:5]} ...")
    return arr


def as_feature(x: object, name: str, n: int) -> np.ndarray:
    """1-D finite float64 feature of length n."""
    arr = _finite_float_array(x, name, 1)
    if arr.shape[0] != n:
        raise ValueError(f"{name}: length {arr.shape[0]} does not match the other inputs ({n})")
    return arr


def as_matrix(x: object, name: str, n: int | None = None) -> np.ndarray:
    """2-D finite float64 array (rows = examples)."""
    arr = _finite_float_array(x, name, 2)
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: {arr.shape[0]} rows do not match the other inputs ({n})")
    return arr


def as_probs(x: object, name: str = "probs", atol: float = 1e-3) -> np.ndarray:
    """(N, K) probabilities: finite, in [0, 1], rows summing to 1 within ``atol``."""
    arr = as_matrix(x, name)
    if arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ValueError(f"{name}: need N >= 1 rows and K >= 2 columns, got shape {arr.shape}")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(f"{name}: probabilities must lie in [0, 1]")
    dev = np.abs(arr.sum(axis=1) - 1.0).max()
    if dev > atol:
        raise ValueError(
            f"{name}: rows must sum to 1 (largest deviation {dev:.3g}); pass softmax output"
        )
    return arr


def as_labels(x: object, name: str, n: int, n_classes: int) -> np.ndarray:
    """1-D int64 labels in [0, n_classes)."""
    arr = np.asarray(x)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
        integral = np.issubdtype(arr.dtype, np.floating) and bool(
            np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
        )
        if not integral:
            raise ValueError(f"{name}: labels must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(
            f"{name}: labels must lie in [0, {n_classes}), got min {arr.min()} and max {arr.max()}"
        )
    return arr


def check_int(value: object, name: str, minimum: int) -> int:
    """An integer >= minimum (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def check_positive(value: object, name: str) -> float:
    """A finite float > 0."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v
