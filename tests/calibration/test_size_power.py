"""Size and power of both within-bin tests under the nulls a sceptical reviewer would build
(miscalibrated models, features that track confidence inside the bins, small bins), with fewer
datasets and wider bounds than bench/size_power.py."""

from __future__ import annotations

import numpy as np
import pytest

from arcal.calibration import permutation_test
from arcal.calibration.simulation import simulate


def _rejection_rate(shape, feature, method, n_sets, n=5000, effect=0.0, seed=0, **kw):
    rng = np.random.default_rng([seed, len(shape), len(feature)])
    hits = 0
    for i in range(n_sets):
        d = simulate(n, shape, feature, rng, effect, n_bins=kw.get("n_bins", 15),
                     min_bin=kw.get("min_bin", 30))
        res = permutation_test(d.conf, d.correct, d.feature, n_perm=99, seed=i, method=method,
                               **kw)
        assert res.ran
        hits += res.pvalue <= 0.05
    return hits / n_sets


@pytest.mark.parametrize(
    ("shape", "feature"),
    [("gamma3", "high"), ("gamma3", "medium"), ("overconfident", "high"),
     ("underconfident", "high"), ("gamma2", "independent")],
)
def test_residualised_test_keeps_its_size_under_realistic_nulls(shape, feature):
    """Miscalibrated models and features that track c inside the bins: 150 datasets each,
    rejection rate within [0.01, 0.11] (0.05 +- 3 Monte Carlo standard errors)."""
    rate = _rejection_rate(shape, feature, "residualised", 150)
    assert 0.01 <= rate <= 0.11, rate


def test_the_papers_test_is_fooled_by_a_feature_that_tracks_confidence():
    """The weakness the residualised test exists for: with z ~ Bernoulli(c^3) and r = c + noise
    the paper's test rejects in most datasets although r carries nothing beyond c."""
    assert _rejection_rate("gamma3", "high", "within-bin", 40) >= 0.5


@pytest.mark.parametrize("method", ["residualised", "within-bin"])
def test_size_with_small_bins(method):
    """n = 600, 15 bins, min_bin 10: bins of 10-100 examples, thirds of 3-33 (a calibrated model
    and an independent feature; the residualised test fits its map on 480 examples a fold)."""
    rate = _rejection_rate("gamma1", "independent", method, 300, n=600, min_bin=10)
    assert 0.02 <= rate <= 0.09, rate


@pytest.mark.parametrize(("shape", "feature"), [("gamma1", "independent"), ("gamma3", "high"),
                                                ("overconfident", "high")])
def test_residualised_test_detects_a_within_bin_effect_of_0_10(shape, feature):
    """A planted within-bin accuracy difference of 0.10 at n = 5000: power >= 0.8 (30 sets)."""
    assert _rejection_rate(shape, feature, "residualised", 30, effect=0.10) >= 0.8


def test_simulated_effect_is_the_requested_achieved_effect():
    rng = np.random.default_rng(4)
    for shape, feature in (("gamma3", "high"), ("underconfident", "independent")):
        d = simulate(5000, shape, feature, rng, effect=0.07)
        assert d.delta > 0 and d.achieved == pytest.approx(0.07, abs=1e-6)
        null = simulate(5000, shape, feature, rng)
        assert null.delta == 0 and null.achieved == 0
    with pytest.raises(ValueError, match="shape"):
        simulate(10, "gamma9x", "high", rng)
    with pytest.raises(ValueError, match="feature"):
        simulate(10, "gamma1", "strong", rng)
