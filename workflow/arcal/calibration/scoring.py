"""Scores of a recalibrated top-label confidence (docs/methods.md, "Probe scores")."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._validate import as_binary, as_conf
from .metrics import binary_brier, binary_nll, ece, smooth_ece, tertile_ece

TERTILES: tuple[str, ...] = ("low", "mid", "high")
ROUTING_FEATURES: tuple[str, ...] = ("depth_var", "r_agg")
METRICS: tuple[str, ...] = (
    "ece",
    *(f"tertile_ece_{f}{part}" for f in ROUTING_FEATURES for part in ("", *(f"_{t}" for t in TERTILES))),
    "smooth_ece", "nll", "brier",
)
"""Score names: ``tertile_ece_<f>`` is the worst tertile, ``tertile_ece_<f>_<low|mid|high>`` the
ECE inside each tertile of feature f."""


def score_confidence(
    conf_hat: np.ndarray,
    correct: np.ndarray,
    r_agg: np.ndarray | None = None,
    depth_var: np.ndarray | None = None,
    n_bins: int = 15,
    features: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """ECE, worst-tertile ECE and the three tertile ECEs by depth_var and by r_agg (only for the
    features given) and by every feature of ``features`` (name -> values, after them, in its
    order), SmoothECE, binary NLL and binary Brier of ``conf_hat`` against ``correct``;
    binned scores use ``n_bins`` equal-width bins."""
    c = as_conf(conf_hat, "conf_hat")
    z = as_binary(correct, "correct", c.shape[0])
    out = {"ece": ece(c, z, n_bins)}
    tertiles = [("depth_var", depth_var), ("r_agg", r_agg)]
    for name, feature in (features or {}).items():
        if any(name == own and value is not None for own, value in tertiles):
            raise ValueError(f"features: {name!r} is given twice (also as its own argument)")
        tertiles.append((name, feature))
    for name, feature in tertiles:
        if feature is not None:
            t = tertile_ece(c, z, feature, n_bins)
            out[f"tertile_ece_{name}"] = t.worst
            out.update({f"tertile_ece_{name}_{part}": v for part, v in zip(TERTILES, t.values)})
    out["smooth_ece"] = smooth_ece(c, z)
    out["nll"] = binary_nll(c, z)
    out["brier"] = binary_brier(c, z)
    return out
