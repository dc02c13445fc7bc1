"""Matched-confidence gaps and the within-bin permutation test."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from arcal.calibration import (
    benjamini_hochberg,
    bin_index,
    matched_gaps,
    permutation_test,
)


def _brute_gaps(c, z, r, n_bins, min_bin):
    """Direct transcription of the definition in docs/methods.md for a feature without ties."""
    idx = bin_index(c, n_bins)
    gaps, sizes = [], []
    for k in range(n_bins):
        members = np.flatnonzero(idx == k)
        if members.size < min_bin:
            continue
        m = members.size // 3
        order = members[np.argsort(r[members])]
        bottom, top = order[:m], order[-m:]
        gaps.append(abs((z[top].mean() - c[top].mean()) - (z[bottom].mean() - c[bottom].mean())))
        sizes.append(members.size)
    sizes = np.array(sizes)
    return max(gaps), float(np.dot(gaps, sizes / sizes.sum())), len(gaps)


def test_matched_gaps_match_the_definition(main_set):
    c, z, r = main_set.conf, main_set.correct, main_set.route
    res = matched_gaps(c, z, r)
    max_gap, weighted, used = _brute_gaps(c, z, r, 15, 30)
    assert res.max_gap == pytest.approx(max_gap, abs=1e-12)
    assert res.weighted_gap == pytest.approx(weighted, abs=1e-12)
    assert res.n_bins_used == used
    counts = np.bincount(bin_index(c, 15), minlength=15)
    assert 0 < used < np.sum(counts > 0)  # some non-empty bins are under min_bin
    assert res.n_used == counts[counts >= 30].sum()
    assert np.all(res.table["n"] >= 30) and res.table["weight"].sum() == pytest.approx(1.0)
    gap_from_table = np.abs((res.table["acc_top"] - res.table["conf_top"])
                            - (res.table["acc_bottom"] - res.table["conf_bottom"]))
    np.testing.assert_allclose(gap_from_table, res.table["gap"], atol=1e-15)


def test_matched_gaps_invariant_to_example_order_and_monotone_feature_maps(main_set):
    c, z, r = main_set.conf, main_set.correct, main_set.route
    perm = np.random.default_rng(3).permutation(c.shape[0])
    a = matched_gaps(c, z, r)
    b = matched_gaps(c[perm], z[perm], np.exp(3 * r[perm]))
    assert a.weighted_gap == pytest.approx(b.weighted_gap, abs=1e-14)


def test_ties_average_over_tie_breaks():
    # one bin of 6: feature [0, 1, 1, 1, 1, 2] -> m = 2; bottom = {0} + half of the tie group
    c = np.full(6, 0.5)
    z = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    r = np.array([0.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    res = matched_gaps(c, z, r, n_bins=1, min_bin=3)
    # average over the tie breaks: bottom = example 0 + one of the 4 tied, top = example 5 + one
    tied_mean = z[1:5].mean()
    expected = abs(((z[5] + tied_mean) / 2) - ((z[0] + tied_mean) / 2))
    assert res.weighted_gap == pytest.approx(expected)
    const = matched_gaps(c, z, np.ones(6), n_bins=1, min_bin=3)
    assert const.weighted_gap == 0.0
    for method in ("within-bin", "residualised"):
        pt = permutation_test(c, z, np.ones(6), n_bins=1, min_bin=3, n_perm=99, method=method)
        assert pt.pvalue == 1.0 and np.all(pt.null == 0.0) and pt.pvalue_max == 1.0


def test_all_correct_and_saturated_confidences():
    """All examples correct, a third of them at exactly c = 1.0 (float32 softmax saturation):
    the 1.0 values join the last bin, and the gap is the confidence difference of the thirds."""
    rng = np.random.default_rng(0)
    c = np.concatenate([rng.uniform(14 / 15, 1.0, 60), np.ones(30)])
    r = rng.normal(size=90)
    res = matched_gaps(c, np.ones(90), r)
    assert res.n_bins_used == 1 and res.table["bin"][0] == 14 and res.table["n"][0] == 90
    order = np.argsort(r)
    expected = abs(c[order[:30]].mean() - c[order[-30:]].mean())
    assert res.max_gap == pytest.approx(expected, abs=1e-14)
    pt = permutation_test(c, np.ones(90), r, n_perm=999, seed=0, method="within-bin")
    assert 0 < pt.pvalue <= 1 and pt.null.shape == (999,)


@pytest.mark.parametrize("method", ["within-bin", "residualised"])
def test_no_bin_reaches_min_bin_means_the_test_did_not_run(method):
    c = np.linspace(0.01, 0.99, 20)
    z = np.tile([1.0, 0.0], 10)
    res = permutation_test(c, z, np.arange(20.0), min_bin=30, n_perm=50, method=method)
    assert not res.ran and res.n_bins_used == 0
    assert np.isnan(res.pvalue) and np.isnan(res.pvalue_max) and np.isnan(res.max_gap)
    assert res.null.shape == (0,) and res.null_max.shape == (0,)


def test_scipy_permutation_test_semantics_on_one_bin(main_set):
    """n_bins = 1 is an unstratified test: compare with scipy.stats.permutation_test."""
    n = 600
    c, z = main_set.conf[:n], main_set.correct[:n]
    r = main_set.route[:n] + 0.8 * main_set.correct[:n] * main_set.route[n:2 * n]
    e, m = z - c, n // 3

    def stat(x, axis=-1):
        order = np.argsort(x, axis=axis)
        ee = e[order]
        return np.abs(ee[..., -m:].mean(axis=-1) - ee[..., :m].mean(axis=-1))

    ours = permutation_test(c, z, r, n_bins=1, min_bin=3, n_perm=4000, seed=1, method="within-bin")
    ref = stats.permutation_test((r,), stat, permutation_type="pairings", vectorized=True,
                                 n_resamples=4000, alternative="greater",
                                 rng=np.random.default_rng(1))
    assert ours.statistic == pytest.approx(ref.statistic, abs=1e-14)
    # same p-value convention: (1 + #{null >= observed}) / (B + 1), never 0
    gamma = 100 * np.finfo(float).eps * ref.statistic
    n_ge = np.sum(ref.null_distribution >= ref.statistic - gamma)
    assert ref.pvalue == pytest.approx((1 + n_ge) / 4001)
    assert ours.pvalue == pytest.approx((1 + np.sum(ours.null >= ours.statistic - gamma)) / 4001)
    # same null distribution (two independent Monte Carlo samples of it)
    assert stats.ks_2samp(ours.null, ref.null_distribution).pvalue > 0.001
    se = np.sqrt(ref.pvalue * (1 - ref.pvalue) / 4000) * np.sqrt(2) + 1e-3
    assert abs(ours.pvalue - ref.pvalue) < 4 * se


def test_null_draws_are_uniform_over_slot_assignments():
    """Two tiny bins (sizes 3 and 4): every assignment of members to third-slots is equally
    likely and the bins are permuted independently."""
    c = np.array([0.1, 0.12, 0.14, 0.9, 0.91, 0.92, 0.93])
    z = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    e = z - c
    r = np.array([3.0, 1.0, 2.0, 4.0, 1.0, 3.0, 2.0])
    res = permutation_test(c, z, r, n_bins=2, min_bin=3, n_perm=60000, seed=5, method="within-bin")
    w1, w2 = 3 / 7, 4 / 7
    expected = {}
    for p1 in itertools.permutations(range(3)):
        for p2 in itertools.permutations(range(4)):
            g1 = abs(e[p1[2]] - e[p1[0]])
            g2 = abs(e[3 + p2[3]] - e[3 + p2[0]])
            key = round(w1 * g1 + w2 * g2, 9)
            expected[key] = expected.get(key, 0) + 1 / (6 * 24)
    keys = np.array(sorted(expected))
    observed = np.round(res.null, 9)
    assert set(np.unique(observed)) <= set(keys)
    counts = np.array([np.sum(observed == k) for k in keys])
    chi = stats.chisquare(counts, [expected[k] * res.n_perm for k in keys])
    assert chi.pvalue > 1e-3
    # the max-gap null comes from the same permutations: never below the weighted gap, never
    # above the larger bin's gap, and equal to it whenever that bin's gap dominates
    assert np.all(res.null_max >= res.null - 1e-12)
    bound = max(np.ptp(e[:3]), np.ptp(e[3:]))
    assert res.null_max.max() <= bound + 1e-12


@pytest.mark.parametrize(
    "feature",
    [[3.0, 1.0, 2.0, 6.0, 5.0, 4.0], [2.0, 1.0, 2.0, 2.0, 3.0, 1.0]],
    ids=["distinct", "tied"],
)
def test_null_is_the_statistic_over_all_permutations_of_the_feature(feature):
    """One bin of 6: the null draws follow the weighted gap of every one of the 720 orders of the
    feature, computed from its definition (ties averaged over tie breaks, so a tied feature puts
    fractional weights on more than the 4 third-slots)."""
    c = np.array([0.61, 0.62, 0.63, 0.64, 0.65, 0.66])
    z = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    r = np.array(feature)
    exact = np.array([matched_gaps(c, z, r[list(p)], n_bins=1, min_bin=3).weighted_gap
                      for p in itertools.permutations(range(6))])
    res = permutation_test(c, z, r, n_bins=1, min_bin=3, n_perm=40000, seed=2, method="within-bin")
    keys, expected = np.unique(np.round(exact, 9), return_counts=True)
    observed = np.round(res.null, 9)
    assert set(np.unique(observed)) <= set(keys)
    counts = np.array([np.sum(observed == k) for k in keys])
    assert stats.chisquare(counts, expected / expected.sum() * res.n_perm).pvalue > 1e-3


def test_a_missing_compiler_says_what_to_do(no_compiler, main_set):
    with pytest.raises(RuntimeError, match=r"could not build permutation_null\.c.*not found.*\$CC"):
        permutation_test(main_set.conf, main_set.correct, main_set.route, n_perm=10)
    assert not list(no_compiler.glob("*.so"))


def test_max_gap_has_its_own_null_and_pvalue(main_set):
    """With one bin the max gap is the weighted gap, so both nulls and p-values coincide; with
    several bins the max-gap p-value counts the max-gap null against the observed max gap."""
    c, z, r = main_set.conf, main_set.correct, main_set.route
    one = permutation_test(c, z, r, n_bins=1, min_bin=3, n_perm=500, seed=3, method="within-bin")
    np.testing.assert_array_equal(one.null_max, one.null)
    assert one.pvalue_max == one.pvalue and one.max_gap == one.weighted_gap
    many = permutation_test(c, z, r, n_perm=500, seed=3, method="within-bin")
    gamma = 100 * np.finfo(float).eps * many.max_gap
    assert many.pvalue_max == (1 + np.sum(many.null_max >= many.max_gap - gamma)) / 501
    assert many.max_gap == matched_gaps(c, z, r).max_gap

def test_deterministic_for_a_seed(main_set):
    c, z, r = main_set.conf, main_set.correct, main_set.route
    for method in ("within-bin", "residualised"):
        a = permutation_test(c, z, r, n_perm=300, seed=7, method=method)
        b = permutation_test(c, z, r, n_perm=300, seed=7, method=method)
        d = permutation_test(c, z, r, n_perm=300, seed=8, method=method)
        np.testing.assert_array_equal(a.null, b.null)
        assert a.pvalue == b.pvalue and not np.array_equal(a.null, d.null)
    paper = permutation_test(c, z, r, n_perm=300, seed=7, method="within-bin")
    assert paper.statistic == matched_gaps(c, z, r).weighted_gap


@pytest.mark.parametrize("method", ["within-bin", "residualised"])
def test_size_under_the_easy_null(method):
    """1000 calibrated datasets with an uninformative feature: rejection rate 0.05 +- 0.02."""
    rng = np.random.default_rng(123)
    pvals = []
    for i in range(1000):
        c = rng.uniform(0.4, 1.0, 300)
        z = (rng.random(300) < c).astype(float)
        r = rng.normal(size=300)
        pvals.append(permutation_test(c, z, r, n_bins=5, min_bin=30, n_perm=199, seed=i,
                                      method=method).pvalue)
    pvals = np.array(pvals)
    assert abs(np.mean(pvals <= 0.05) - 0.05) <= 0.02
    assert pvals.min() >= 1 / 200


def test_benjamini_hochberg_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 0.01, 5), rng.uniform(0, 1, 25)])
    ours = benjamini_hochberg(p, 0.05)
    ref = multitest.multipletests(p, alpha=0.05, method="fdr_bh")[0]
    np.testing.assert_array_equal(ours, ref)
    with_nan = benjamini_hochberg(np.concatenate([p, [np.nan]]), 0.05)
    np.testing.assert_array_equal(with_nan[:-1], ref)
    assert not with_nan[-1]
