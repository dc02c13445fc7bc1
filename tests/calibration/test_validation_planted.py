"""Input validation (every error names its argument) and the planted control."""

from __future__ import annotations

import numpy as np
import pytest

import arcal.calibration as cal

C = np.array([0.2, 0.5, 0.9, 1.0])
Z = np.array([0.0, 1.0, 1.0, 1.0])
R = np.array([0.1, 0.4, 0.3, 0.2])
P = np.array([[0.8, 0.2], [0.5, 0.5], [0.1, 0.9], [0.0, 1.0]])
Y = np.array([0, 1, 1, 1])


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: cal.ece(C[:, None], Z), "conf"),
        (lambda: cal.ece(np.array([0.2, np.nan, 0.9, 1.0]), Z), "conf"),
        (lambda: cal.ece(np.array([0.2, np.inf, 0.9, 1.0]), Z), "conf"),
        (lambda: cal.ece(np.array([0.2, 1.2, 0.9, 1.0]), Z), "conf"),
        (lambda: cal.ece(np.array([-0.1, 0.5, 0.9, 1.0]), Z), "conf"),
        (lambda: cal.ece(np.array([]), np.array([])), "conf"),
        (lambda: cal.ece(C, Z[:3]), "correct"),
        (lambda: cal.ece(C, np.array([0, 1, 2, 1])), "correct"),
        (lambda: cal.ece(C, Z, n_bins=0), "n_bins"),
        (lambda: cal.ece(C, Z, n_bins=2.5), "n_bins"),
        (lambda: cal.mce(C, Z, min_count=0), "min_count"),
        (lambda: cal.nll(P, np.array([0, 1, 2, 1])), "labels"),
        (lambda: cal.nll(P, np.array([0, -1, 1, 1])), "labels"),
        (lambda: cal.nll(P, np.array([0.5, 1, 1, 1])), "labels"),
        (lambda: cal.brier(P * 2, Y), "probs"),
        (lambda: cal.classwise_ece(P[:, :1], Y), "probs"),
        (lambda: cal.tertile_ece(C, Z, R[:3]), "feature"),
        (lambda: cal.tertile_ece(C[:2], Z[:2], R[:2]), "conf"),
        (lambda: cal.matched_gaps(C, Z, np.array([0.1, np.nan, 0.3, 0.2])), "feature"),
        (lambda: cal.matched_gaps(C, Z, R, min_bin=2), "min_bin"),
        (lambda: cal.permutation_test(C, Z, R, n_perm=0), "n_perm"),
        (lambda: cal.permutation_test(C, Z, R, seed=-1), "seed"),
        (lambda: cal.benjamini_hochberg(np.array([0.1, 1.5])), "pvalues"),
        (lambda: cal.benjamini_hochberg(np.array([0.1]), alpha=0), "alpha"),
        (lambda: cal.nw_predict(np.zeros((3, 2)), np.zeros(3), np.zeros((2, 1)), 1.0), "x_eval"),
        (lambda: cal.nw_predict(np.zeros((3, 2)), np.zeros(2), np.zeros((2, 2)), 1.0), "y_train"),
        (lambda: cal.nw_predict(np.zeros((3, 2)), np.zeros(3), np.zeros((2, 2)), [1.0, 0.0]), "h"),
        (lambda: cal.nw_loo(np.zeros((1, 1)), np.zeros(1), 1.0), "x_train"),
        (lambda: cal.nw_kfold(np.zeros((3, 1)), np.zeros(3), 1.0, k=5), "k"),
        (lambda: cal.ProbeInputs(np.zeros((4, 1)), Y), "logits"),
        (lambda: cal.ProbeInputs(np.zeros((4, 2)), np.array([0, 1, 2, 0])), "labels"),
        (lambda: cal.ProbeInputs(np.zeros((4, 2)), Y, H=np.zeros((3, 2))), "H"),
        (lambda: cal.ProbeInputs(np.zeros((4, 2)), Y, depth_var=np.zeros(5)), "depth_var"),
        (lambda: cal.make_probe("raw").fit("not inputs"), "train"),
        (lambda: cal.make_probe("mlp-full", width=0), "width"),
        (lambda: cal.make_probe("nw-conf", multiplier=-1.0), "multiplier"),
        (lambda: cal.planted_correctness(C, C, R, np.nan, np.random.default_rng(0)), "delta"),
        (lambda: cal.planted_correctness(C, C, R, 0.1, 0), "rng"),
        (lambda: cal.planted_probability(C + 0.5, C, R, 0.1), "base"),
        (lambda: cal.permutation_test(C, Z, R, method="exact"), "method"),
        (lambda: cal.ConfidenceMap().fit(C, Z[:3]), "correct"),
        (lambda: cal.score_confidence(C + 0.5, Z), "conf_hat"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b"):
        call()


def test_boolean_and_integer_inputs_are_accepted():
    assert cal.ece(C, Z.astype(bool)) == cal.ece(C, Z.astype(int)) == cal.ece(C, Z)
    assert cal.nll(P, Y.astype(np.int32)) == cal.nll(P, Y)


def test_planted_correctness_has_the_planted_conditional_rate():
    """P(z' = 1) = expit(logit(base) + delta * s) with s the within-bin centred rank."""
    rng = np.random.default_rng(0)
    n = 200_000
    c = rng.uniform(0.3, 0.7, n)
    base = 0.5 + 0.5 * (c - 0.5)  # an underconfident model's map
    r = rng.normal(size=n)
    z = cal.planted_correctness(base, c, r, 1.0, rng, n_bins=3)
    s = cal.within_bin_rank(c, r, n_bins=3)
    expected = 1.0 / (1.0 + np.exp(-(np.log(base / (1 - base)) + s)))
    for lo, hi in ((-1, -0.5), (-0.1, 0.1), (0.5, 1)):
        sel = (s >= lo) & (s < hi)
        assert z[sel].mean() == pytest.approx(expected[sel].mean(), abs=0.01)
    z0 = cal.planted_correctness(base, c, r, 0.0, np.random.default_rng(1))
    assert abs(z0.mean() - base.mean()) < 0.005
    # deterministic for a given generator state
    a = cal.planted_correctness(base[:100], c[:100], r[:100], 0.1, np.random.default_rng(5))
    b = cal.planted_correctness(base[:100], c[:100], r[:100], 0.1, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
