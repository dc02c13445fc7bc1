"""The planted control finds what was planted, and keeps its size when nothing was."""

import numpy as np
import pytest

from arcal.analysis import planted
from arcal.calibration import ProbeInputs


def with_correctness(inputs: ProbeInputs, correct: np.ndarray) -> ProbeInputs:
    """The same logits and routing features, relabelled so that correctness equals `correct`."""
    labels = np.where(correct > 0.5, inputs.pred, (inputs.pred + 1) % inputs.logits.shape[1])
    return ProbeInputs(inputs.logits, labels, inputs.H, inputs.r_agg, inputs.depth_var)


@pytest.fixture(scope="module")
def miscalibrated_splits(make_split):
    """Splits whose correctness is Bernoulli(c^2): an overconfident model, as real ones are."""
    out = []
    for seed in (10, 11):
        s = make_split(2000, seed)
        z = np.random.default_rng(seed).random(s.n) < s.conf**2
        out.append(with_correctness(s, z.astype(float)))
    return out


@pytest.mark.parametrize("feature", ["depth_var", "r_agg"])
def test_planted_effect_is_detected_and_null_is_not(miscalibrated_splits, calibration_settings,
                                                    feature):
    calib, test = miscalibrated_splits
    settings = {"feature": feature, "deltas": [0.0, 3.0], "repetitions": 12, "n_perm": 199}
    table = planted.planted_rows(calib, test, settings, calibration_settings, seed=0)
    assert list(table.columns) == planted.COLUMNS
    methods = calibration_settings["test_methods"]
    assert len(table) == 2 * 12 * len(methods) and set(table["method"]) == set(methods)
    assert (table["routing_probe"] == planted.ROUTING_PROBE[feature]).all()
    null, strong = table[table["delta"] == 0.0], table[table["delta"] == 3.0]
    assert (null["achieved_effect"].abs() < 1e-9).all()
    assert (strong["achieved_effect"] > 0.05).all()  # logit units -> a visible accuracy effect
    for method in methods:
        assert null.loc[null["method"] == method, "reject"].mean() <= 0.25
        assert strong.loc[strong["method"] == method, "reject"].mean() >= 0.9
    # with a planted effect in the feature, the probe on (c, feature) must beat nw-conf (c)
    assert strong["ece_gain"].mean() > 0.01
    assert strong["ece_gain"].mean() > null["ece_gain"].mean()


def test_summary_rates_intervals_and_tests_not_run():
    rows = []
    for delta, rejects in ((0.0, [0, 0, 1, 0]), (1.0, [1, 0, 1, 1]), (2.0, [1, 1, 1, None])):
        for rep, r in enumerate(rejects):
            rows.append(("depth_var", delta, 0.03 * delta, rep, "residualised", r is not None,
                         0.5 if r is not None else np.nan, r if r is None else bool(r),
                         "ar-condcal", 0.1, 0.05, 0.05 * delta))
    frame = planted.pd.DataFrame(rows, columns=planted.COLUMNS)
    frame["reject"] = frame["reject"].astype("boolean")
    summary = planted.summarise({"fmnist/vit/block/seed0": frame})
    assert list(summary.columns) == planted.SUMMARY_COLUMNS
    by_delta = summary.set_index("delta")
    assert by_delta.loc[0.0, "reject_rate"] == 0.25
    assert by_delta.loc[0.0, "reject_lo"] < 0.25 < by_delta.loc[0.0, "reject_hi"]
    # the repetition that did not run is neither a rejection nor a non-rejection
    assert by_delta.loc[2.0, "n_rep"] == 4 and by_delta.loc[2.0, "n_ran"] == 3
    assert by_delta.loc[2.0, "reject_rate"] == 1.0 and by_delta.loc[2.0, "reject_hi"] == 1.0
    assert by_delta.loc[1.0, "achieved_effect"] == pytest.approx(0.03)
