"""The confidence-only calibration map, its cross-fitting, the third contrast and the planted
control's building blocks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logit

from arcal.calibration import (
    ConfidenceMap,
    achieved_effect,
    cross_fitted_map,
    matched_gaps,
    planted_correctness,
    planted_probability,
    third_contrast,
    within_bin_rank,
)
from arcal.calibration.confidence_map import KNOT_QUANTILES, spline_basis


def test_spline_basis_is_a_natural_cubic_spline():
    """Continuous with continuous first and second derivatives, cubic between knots and linear
    beyond the outer knots (second derivative zero there)."""
    knots = np.array([-1.0, 0.0, 1.5, 3.0, 5.0])
    x = np.linspace(-4.0, 9.0, 2001)
    b = spline_basis(x, knots)
    assert b.shape == (x.size, 4)
    np.testing.assert_array_equal(b[:, 0], x)
    d2 = np.diff(b, 2, axis=0) / (x[1] - x[0]) ** 2
    step = x[1] - x[0]
    outside = (x[1:-1] < knots[0] - 2 * step) | (x[1:-1] > knots[-1] + 2 * step)
    assert np.abs(d2[outside]).max() < 1e-6
    assert np.abs(np.diff(d2, axis=0)).max() < 1e-2  # no jumps in the second derivative


def test_map_matches_statsmodels_logistic_regression_on_the_same_basis():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    c = 0.1 + 0.9 * rng.beta(5, 1.2, 4000)
    z = (rng.random(4000) < c**2).astype(float)
    fitted = ConfidenceMap().fit(c, z)
    x = logit(np.clip(c, 1e-6, 1 - 1e-6))
    np.testing.assert_allclose(fitted.knots_, np.quantile(x, KNOT_QUANTILES))
    design = sm.add_constant(spline_basis(x, fitted.knots_))
    ref = sm.GLM(z, design, family=sm.families.Binomial()).fit(tol=1e-14)
    # the map's tiny ridge (1e-6) moves the weakly determined cubic terms by < 0.1%
    np.testing.assert_allclose(fitted.coef_, ref.params, rtol=1e-3)
    np.testing.assert_allclose(fitted.predict(c), ref.predict(design), atol=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_map_recovers_curved_reliability(gamma):
    rng = np.random.default_rng(1)
    c = 0.1 + 0.9 * rng.beta(5, 1.2, 20000)
    z = (rng.random(c.size) < c**gamma).astype(float)
    grid = np.quantile(c, np.linspace(0.05, 0.95, 19))
    assert np.abs(ConfidenceMap().fit(c, z).predict(grid) - grid**gamma).max() < 0.03


def test_map_survives_separation_ties_and_saturated_confidences():
    c = np.concatenate([np.full(50, 1.0), np.linspace(0.5, 0.99, 50)])
    for z in (np.ones(100), np.zeros(100), (c > 0.9).astype(float)):
        p = ConfidenceMap().fit(c, z).predict(c)
        assert np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1))
    const = ConfidenceMap().fit(np.full(20, 0.7), np.tile([1.0, 0.0, 1.0, 1.0], 5))
    assert const.knots_.size == 1
    np.testing.assert_allclose(const.predict(np.array([0.2, 0.7])), 0.75, atol=1e-4)
    with pytest.raises(ValueError, match="fit"):
        ConfidenceMap().predict(c)


def test_cross_fitted_value_ignores_the_examples_own_outcome():
    """Flipping one example's z changes the map of the other folds, not its own value (beyond the
    optimiser's tolerance: the folds start from the whole split's solution, but each fold's convex
    problem has one minimum whatever the start)."""
    rng = np.random.default_rng(2)
    c = rng.uniform(0.3, 1.0, 500)
    z = (rng.random(500) < c).astype(float)
    a = cross_fitted_map(c, z, folds=5, seed=3)
    flipped = z.copy()
    flipped[17] = 1 - flipped[17]
    b = cross_fitted_map(c, flipped, folds=5, seed=3)
    assert a[17] == pytest.approx(b[17], abs=1e-7)
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_array_equal(a, cross_fitted_map(c, z, folds=5, seed=3))


def test_reference_replaces_confidence_in_the_gaps():
    rng = np.random.default_rng(5)
    c = rng.uniform(0.5, 1.0, 3000)
    z = (rng.random(3000) < c**2).astype(float)
    r = c + rng.normal(0, 0.01, 3000)
    plain = matched_gaps(c, z, r)
    same = matched_gaps(c, z, r, reference=c)
    assert plain.weighted_gap == same.weighted_gap
    ref = c**2
    res = matched_gaps(c, z, r, reference=ref)
    t = res.table
    np.testing.assert_allclose(t["gap"], np.abs((t["acc_top"] - t["ref_top"])
                                                - (t["acc_bottom"] - t["ref_bottom"])))
    assert np.all(t["ref_top"] != t["conf_top"])
    with pytest.raises(ValueError, match="reference"):
        matched_gaps(c, z, r, reference=ref[:10])


def test_third_contrast_is_the_signed_matched_gap():
    """For values z - c the contrast is the signed version of the weighted gap."""
    rng = np.random.default_rng(6)
    c = rng.uniform(0.4, 1.0, 2000)
    z = (rng.random(2000) < c).astype(float)
    r = rng.normal(size=2000)
    gaps = matched_gaps(c, z, r)
    signed = (gaps.table["acc_top"] - gaps.table["conf_top"]
              - gaps.table["acc_bottom"] + gaps.table["conf_bottom"])
    assert third_contrast(c, z - c, r) == pytest.approx(float(signed @ gaps.table["weight"]))
    assert np.isnan(third_contrast(c[:20], z[:20] - c[:20], r[:20]))


def test_within_bin_rank_and_planted_probability():
    c = np.array([0.05, 0.06, 0.07, 0.95, 0.96, 0.97, 0.98])
    r = np.array([3.0, 1.0, 2.0, 0.0, 5.0, 5.0, 1.0])
    s = within_bin_rank(c, r, n_bins=2)
    np.testing.assert_allclose(s[:3], [2 / 3, -2 / 3, 0.0])
    np.testing.assert_allclose(s[3:], [-0.75, 0.5, 0.5, -0.25])  # ties share their mean rank
    base = np.full(7, 0.8)
    np.testing.assert_allclose(planted_probability(base, c, r, 0.0, 2), base)
    p = planted_probability(base, c, r, 1.5, 2)
    np.testing.assert_allclose(logit(p), logit(0.8) + 1.5 * s)
    with pytest.raises(ValueError, match="delta"):
        planted_probability(base, c, r, np.inf, 2)
    with pytest.raises(ValueError, match="rng"):
        planted_correctness(base, c, r, 1.0, 0)


def test_planted_effect_lives_within_bins_and_grows_with_delta():
    """The achieved effect is 0 at delta = 0 and grows with delta, and drawn labels show it: the
    empirical top-minus-bottom contrast of z - base matches it within Monte Carlo error."""
    rng = np.random.default_rng(7)
    c = 0.1 + 0.9 * rng.beta(5, 1.2, 20000)
    r = c + rng.normal(0, 0.01, c.size)  # tracks confidence inside the bins
    base = c**3
    effects = [achieved_effect(base, planted_probability(base, c, r, d), c, r)
               for d in (0.0, 0.5, 1.0, 2.0)]
    assert effects[0] == pytest.approx(0.0, abs=1e-12) and np.all(np.diff(effects) > 0)
    draws = [third_contrast(c, planted_correctness(base, c, r, 2.0, rng) - base, r)
             for _ in range(20)]
    assert np.mean(draws) == pytest.approx(effects[3], abs=3 * np.std(draws) / np.sqrt(20))
