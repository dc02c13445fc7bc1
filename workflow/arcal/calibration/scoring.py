"""Scores of a recalibrated top-label confidence (DESIGN section 2, "Scores per probe")."""

from __future__ import annotations

import numpy as np

from ._validate import as_binary, as_conf
from .metrics import binary_brier, binary_nll, ece, smooth_ece, tertile_ece

METRICS: tuple[str, ...] = ("ece", "tertile_ece_depth_var", "tertile_ece_r_agg", "smooth_ece",
                            "nll", "brier")


def score_confidence(
    conf_hat: np.ndarray,
    correct: np.ndarray,
    r_agg: np.ndarray | None = None,
    depth_var: np.ndarray | None = None,
    n_bins: int = 15,
) -> dict[str, float]:
    """ECE, worst-tertile ECE by depth_var and by r_agg (only for the features given),
    SmoothECE, binary NLL and binary Brier of ``conf_hat`` against ``correct``."""
    c = as_conf(conf_hat, "conf_hat")
    z = as_binary(correct, "correct", c.shape[0])
    out = {"ece": ece(c, z, n_bins)}
    if depth_var is not None:
        out["tertile_ece_depth_var"] = tertile_ece(c, z, depth_var, n_bins).worst
    if r_agg is not None:
        out["tertile_ece_r_agg"] = tertile_ece(c, z, r_agg, n_bins).worst
    out["smooth_ece"] = smooth_ece(c, z)
    out["nll"] = binary_nll(c, z)
    out["brier"] = binary_brier(c, z)
    return out
