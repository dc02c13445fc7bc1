"""Statistics core of arcal: calibration metrics, matched-confidence gaps, the within-bin
permutation test, recalibration probes, bandwidth rules and the planted control.

Definitions follow docs/methods.md; every function validates its inputs and raises
``ValueError`` naming the bad argument.
"""

from .bandwidth import CV_MULTIPLIERS, RULES, SCOTT_MULTIPLIERS, cv_nll_curve, scott_factor
from .binning import bin_edges, bin_index
from .confidence_map import ConfidenceMap, cross_fitted_map
from .gaps import MatchedGaps, matched_gaps, third_contrast
from .inputs import BUILTIN_FEATURES, NAME_PATTERN, RESERVED_FEATURES, ProbeInputs, check_name
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
    nll_logits,
    smooth_ece,
    tertile_ece,
    tertile_index,
)
from .mlp import MLPProbe, matched_width, mlp_param_count
from .permutation import METHODS, PermutationResult, benjamini_hochberg, permutation_test
from .planted import achieved_effect, planted_correctness, planted_probability, within_bin_rank
from .probes import LinearConfProbe, NWProbe, Probe, RawProbe, TemperatureProbe, fit_temperature
from .registry import (
    NW_FEATURES, PROBES, ROUTING_PROBES, is_nw_probe, make_probe, mlp_probe_name, nw_features,
    nw_probe_name,
)
from .scoring import METRICS, TERTILES, score_confidence
from .softmax import log_softmax, predictive_entropy, softmax, top_label
from .sweep import bandwidth_sweep

__all__ = [
    "BUILTIN_FEATURES", "NAME_PATTERN", "RESERVED_FEATURES", "check_name", "is_nw_probe",
    "mlp_probe_name", "nw_features", "nw_probe_name",
    "CV_MULTIPLIERS", "METHODS", "METRICS", "NW_FEATURES", "PROBES", "ROUTING_PROBES", "RULES",
    "SCOTT_MULTIPLIERS", "TERTILES", "ConfidenceMap", "LinearConfProbe", "MLPProbe", "MatchedGaps",
    "NWProbe", "PermutationResult", "Probe", "ProbeInputs", "RawProbe", "TemperatureProbe",
    "TertileECE", "achieved_effect", "bandwidth_sweep", "benjamini_hochberg", "bin_edges",
    "bin_index", "binary_brier", "binary_nll", "brier", "classwise_ece", "cross_fitted_map",
    "cv_nll_curve", "ece", "fit_temperature", "log_softmax", "make_probe", "matched_gaps",
    "matched_width", "mce", "mlp_param_count", "nll", "nll_logits", "nw_kfold", "nw_kfold_grid",
    "nw_loo", "nw_predict", "nw_predict_grid", "permutation_test", "planted_correctness",
    "planted_probability", "predictive_entropy", "score_confidence", "scott_factor", "smooth_ece",
    "softmax", "tertile_ece", "tertile_index", "third_contrast", "top_label", "within_bin_rank",
]
