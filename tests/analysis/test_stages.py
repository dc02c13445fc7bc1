"""Per-cell stages on synthetic splits: every row the CSV contracts promise, and sane values."""

import numpy as np
import pytest

from arcal.analysis import bandwidth, permutation, probes
from arcal import calibration as cal
from arcal.calibration import ProbeInputs


def test_probe_rows_cover_every_probe_and_metric(splits, calibration_settings):
    calib, test = splits
    settings = dict(calibration_settings, probes=["raw", "temperature", "nw-conf", "ar-condcal",
                                                  "linear-conf"])
    table = probes.probe_rows(calib, test, settings, seed=0)
    assert list(table.columns) == probes.COLUMNS
    assert set(table["probe"]) == set(settings["probes"])
    for _, g in table.groupby("probe"):
        assert list(g["metric"]) == list(cal.METRICS)
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
    expected = [(f, m) for f in settings["features"] for m in settings["test_methods"]]
    assert list(zip(table["feature"], table["method"])) == expected
    assert set(settings["test_methods"]) == {"residualised", "within-bin"}
    assert table["ran"].all() and table["reject"].notna().all()
    assert ((table["p_value"] > 0) & (table["p_value"] <= 1)).all()
    for row in table.itertuples():
        key = f"{row.method}/{row.feature}"
        assert nulls[key].shape == nulls[f"{key}/max"].shape == (199,)
        assert float(nulls[f"{row.method}/observed_{row.feature}"]) == row.weighted_gap
        assert row.reject == (row.p_value <= settings["alpha"])
    # the paper's statistic is the gap of z - c; ours is that of z - m(c)
    paper = table.set_index(["feature", "method"]).xs("within-bin", level="method")
    for f in settings["features"]:
        ref = cal.matched_gaps(test.conf, test.correct, test.feature(f), settings["n_bins"],
                               settings["min_bin"])
        assert paper.loc[f, "weighted_gap"] == ref.weighted_gap
    again, _ = permutation.feature_tests(test, settings, seed=3)
    assert again.equals(table)


def test_a_test_that_cannot_run_is_reported_as_not_run(splits, calibration_settings, caplog):
    """No bin reaches min_bin: `ran` False, NaN p-value, an empty `reject` (not a
    non-rejection) and a warning in the log naming the feature and what to change."""
    _, test = splits
    settings = dict(calibration_settings, n_perm=50, min_bin=5000)
    with caplog.at_level("WARNING"):
        table, nulls = permutation.feature_tests(test, settings, seed=0)
    assert not table["ran"].any() and table["p_value"].isna().all()
    assert table["reject"].isna().all()
    assert table.to_csv(index=False).splitlines()[1].endswith(",50,")  # reject written empty
    assert "NOT RUN" in caplog.text and "min_bin=5000" in caplog.text
    assert all(v.size == 0 for k, v in nulls.items() if not k.split("/")[-1].startswith("observed"))


def test_bandwidth_rows_have_every_rule(splits, calibration_settings):
    calib, test = splits
    table = bandwidth.sweep_rows(calib, test, calibration_settings)
    assert list(table.columns) == bandwidth.COLUMNS
    assert set(table["probe"]) == set(calibration_settings["sweep_probes"])
    assert {"scott", "cv-nll", "cv-nll-curve", "oracle"} <= set(table["rule"])
    scott = table[(table["rule"] == "scott") & (table["metric"] == "ece")]
    assert sorted(scott["multiplier"].unique()) == sorted(calibration_settings["scott_multipliers"])
