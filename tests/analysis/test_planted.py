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
def calibrated_splits(make_split):
    """Splits whose correctness is Bernoulli(c): calibrated given confidence."""
    out = []
    for seed in (10, 11):
        s = make_split(2000, seed)
        z = np.random.default_rng(seed).random(s.n) < s.conf
        out.append(with_correctness(s, z.astype(float)))
    return out


def test_planted_effect_is_detected_and_null_is_not(calibrated_splits, calibration_settings):
    calib, test = calibrated_splits
    settings = {"feature": "depth_var", "deltas": [0.0, 0.3], "repetitions": 12, "n_perm": 199}
    table = planted.planted_rows(calib, test, settings, calibration_settings, seed=0)
    assert list(table.columns) == planted.COLUMNS
    assert len(table) == 24
    null, strong = table[table["delta"] == 0.0], table[table["delta"] == 0.3]
    assert null["reject"].mean() <= 0.25  # size 0.05; 12 draws leave room, not this much
    assert strong["reject"].mean() >= 0.9
    # with a planted effect in depth_var, ar-condcal (c, depth_var) must beat nw-conf (c)
    assert strong["ece_gain"].mean() > 0.01
    assert strong["ece_gain"].mean() > null["ece_gain"].mean()


def test_summary_rates_intervals_and_smallest_delta():
    rows = []
    for delta, rejects in ((0.0, [0, 0, 1, 0]), (0.1, [1, 0, 1, 1]), (0.2, [1, 1, 1, 1])):
        for rep, r in enumerate(rejects):
            rows.append(("depth_var", delta, rep, 0.5, bool(r), 0.1, 0.05, 0.05 * delta))
    frame = planted.pd.DataFrame(rows, columns=planted.COLUMNS)
    summary = planted.summarise({"fmnist/vit/block/seed0": frame})
    assert list(summary.columns) == planted.SUMMARY_COLUMNS
    by_delta = summary.set_index("delta")
    assert by_delta.loc[0.0, "reject_rate"] == 0.25
    assert by_delta.loc[0.0, "reject_lo"] < 0.25 < by_delta.loc[0.0, "reject_hi"]
    assert by_delta.loc[0.2, "reject_hi"] == 1.0
    first = planted.smallest_detected(summary, power=0.8)
    assert first["min_delta"].tolist() == [0.2]
    assert planted.smallest_detected(summary, power=0.7)["min_delta"].tolist() == [0.1]
