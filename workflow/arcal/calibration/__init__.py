"""Statistics core of arcal: calibration metrics, matched-confidence gaps, the within-bin
permutation test, recalibration probes, bandwidth rules and the planted control.

Definitions follow DESIGN section 2; every function validates its inputs and raises
``ValueError`` naming the bad argument.
"""

from .bandwidth import CV_MULTIPLIERS, RULES, SCOTT_MULTIPLIERS, cv_nll_curve, scott_factor
from .binning import bin_edges, bin_index
from .gaps import MatchedGaps, matched_gaps
from .inputs import ProbeInputs
from .kernel import nw_kfold, nw_kfold_grid, nw_loo, nw_predict, nw_predict_grid
from .metrics import (
    TertileECE,
    binary_brier,
    binary_nll,
    brier,
    classwise_ece,
    ece,
    mce,
    nll,
    smooth_ece,
    tertile_ece,
    tertile_index,
)
from .mlp import MLPProbe, matched_width, mlp_param_count
from .permutation import PermutationResult, benjamini_hochberg, permutation_test
from .planted import centred_rank, planted_correctness
from .probes import LinearConfProbe, NWProbe, Probe, RawProbe, TemperatureProbe, fit_temperature
from .registry import NW_FEATURES, PROBES, ROUTING_PROBES, make_probe
from .scoring import METRICS, score_confidence
from .softmax import log_softmax, predictive_entropy, softmax, top_label
from .sweep import bandwidth_sweep

__all__ = [
    "CV_MULTIPLIERS", "METRICS", "NW_FEATURES", "PROBES", "ROUTING_PROBES", "RULES",
    "SCOTT_MULTIPLIERS", "LinearConfProbe", "MLPProbe", "MatchedGaps", "NWProbe",
    "PermutationResult", "Probe", "ProbeInputs", "RawProbe", "TemperatureProbe", "TertileECE",
    "bandwidth_sweep", "benjamini_hochberg", "bin_edges", "bin_index", "binary_brier",
    "binary_nll", "brier", "centred_rank", "classwise_ece", "cv_nll_curve", "ece",
    "fit_temperature", "log_softmax", "make_probe", "matched_gaps", "matched_width", "mce",
    "mlp_param_count", "nll", "nw_kfold", "nw_kfold_grid", "nw_loo", "nw_predict",
    "nw_predict_grid", "permutation_test", "planted_correctness", "predictive_entropy",
    "scott_factor", "score_confidence", "smooth_ece", "softmax", "tertile_ece", "tertile_index",
    "top_label",
]
