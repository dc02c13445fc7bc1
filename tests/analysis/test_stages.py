"""Per-cell stages on synthetic splits: every row the CSV contracts promise, and sane values."""

import numpy as np
import pytest

from arcal.analysis import bandwidth, permutation, probes
from arcal.calibration import ProbeInputs


def test_probe_rows_cover_every_probe_and_metric(splits, calibration_settings):
    calib, test = splits
    settings = dict(calibration_settings, probes=["raw", "temperature", "nw-conf", "ar-condcal",
                                                  "linear-conf"])
    table = probes.probe_rows(calib, test, settings, seed=0)
    assert list(table.columns) == probes.COLUMNS
    assert set(table["probe"]) == set(settings["probes"])
    metrics = {"ece", "tertile_ece_depth_var", "tertile_ece_r_agg", "smooth_ece", "nll", "brier"}
    for _, g in table.groupby("probe"):
        assert set(g["metric"]) == metrics
    assert np.isfinite(table["value"]).all()
    nw = table[table["probe"] == "ar-condcal"]
    assert (nw["bandwidth_rule"] == "cv-nll").all()
    assert nw["multiplier"].iloc[0] in probes.cv_grid(settings)
    assert (table[table["probe"] == "raw"]["bandwidth_rule"] == "none").all()
    score = table.set_index(["probe", "metric"])["value"]
    # the synthetic model is miscalibrated in both directions: the non-parametric probe must
    # lower ECE, and the logistic probe must lower the binary NLL it is fitted to minimise
    assert score["nw-conf", "ece"] < score["raw", "ece"] / 2
    assert score["linear-conf", "nll"] < score["raw", "nll"]


def test_probes_refuse_a_dump_without_routing(splits, calibration_settings):
    calib, test = splits
    bare = ProbeInputs(test.logits, test.labels)
    with pytest.raises(ValueError, match="routing trace"):
        probes.probe_rows(calib, bare, calibration_settings)


def test_permutation_rows_and_nulls(splits, calibration_settings):
    _, test = splits
    settings = dict(calibration_settings, n_perm=199)
    table, nulls = permutation.feature_tests(test, settings, seed=3)
    assert list(table.columns) == permutation.COLUMNS
    assert list(table["feature"]) == settings["features"]
    assert ((table["p_value"] > 0) & (table["p_value"] <= 1)).all()
    for f in settings["features"]:
        assert nulls[f].shape == (199,)
        assert float(nulls[f"observed_{f}"]) == pytest.approx(
            table.set_index("feature").loc[f, "weighted_gap"])
    again, _ = permutation.feature_tests(test, settings, seed=3)
    assert again.equals(table)


def test_bandwidth_rows_have_every_rule(splits, calibration_settings):
    calib, test = splits
    table = bandwidth.sweep_rows(calib, test, calibration_settings)
    assert list(table.columns) == bandwidth.COLUMNS
    assert set(table["probe"]) == set(calibration_settings["sweep_probes"])
    assert {"scott", "cv-nll", "cv-nll-curve", "oracle"} <= set(table["rule"])
    scott = table[(table["rule"] == "scott") & (table["metric"] == "ece")]
    assert sorted(scott["multiplier"].unique()) == sorted(calibration_settings["scott_multipliers"])
