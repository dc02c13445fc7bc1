"""Nadaraya-Watson regression: exactness, chunking, bandwidth grids, recovering P(z | c, r)."""

from __future__ import annotations

import numpy as np
import pytest

from arcal.calibration import (
    CV_MULTIPLIERS,
    cv_nll_curve,
    nw_kfold,
    nw_kfold_grid,
    nw_loo,
    nw_predict,
    nw_predict_grid,
    scott_factor,
)
from arcal.calibration.kernel import kfold_ids


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(4)
    n = 300
    x = np.column_stack([rng.uniform(0.3, 1.0, n), rng.normal(size=n)])
    y = (rng.random(n) < x[:, 0]).astype(float)
    h = np.array([0.08, 0.5])
    return x, y, h


def _brute_loo(x, y, h):
    out = np.empty(len(y))
    for i in range(len(y)):
        w = np.exp(-0.5 * np.sum(((x - x[i]) / h) ** 2, axis=1))
        w[i] = 0.0
        out[i] = w @ y / w.sum()
    return out


@pytest.mark.filterwarnings("ignore::FutureWarning")  # statsmodels' own RNG notice
def test_loo_matches_brute_force_and_statsmodels(small):
    kr_mod = pytest.importorskip("statsmodels.nonparametric.kernel_regression")
    x, y, h = small
    loo = nw_loo(x, y, h)
    np.testing.assert_allclose(loo, _brute_loo(x, y, h), rtol=1e-12, atol=1e-14)
    kr = kr_mod.KernelReg(y, x, var_type="cc", reg_type="lc", bw=list(h))
    assert np.mean((y - loo) ** 2) == pytest.approx(kr.cv_loo(h, kr.est["lc"]), rel=1e-10)
    fitted, _ = kr.fit()
    np.testing.assert_allclose(nw_predict(x, y, x, h), fitted, rtol=1e-10, atol=1e-13)
    x_new = x[:20] + 0.01
    np.testing.assert_allclose(nw_predict(x, y, x_new, h), kr.fit(x_new)[0], rtol=1e-10, atol=1e-13)


def test_chunking_and_grid_reuse_are_exact(small):
    x, y, h = small
    grid = nw_predict_grid(x, y, x[:50], h, CV_MULTIPLIERS, chunk_elems=997)
    for g, mu in enumerate(CV_MULTIPLIERS):
        direct = nw_predict(x, y, x[:50], h * mu, chunk_elems=1 << 22)
        np.testing.assert_allclose(grid[g], direct, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(nw_loo(x, y, h, chunk_elems=301), nw_loo(x, y, h), rtol=1e-14)


def test_isolated_points_at_tiny_bandwidth_get_nearest_neighbour():
    x = np.array([0.0, 0.1, 5.0, 10.0])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    p = nw_predict(x, y, np.array([4.0, 9.0]), 1e-3)
    # far points keep a floored weight of e^-700 relative to the nearest one (documented)
    np.testing.assert_allclose(p, [1.0, 0.0], atol=1e-290)
    assert np.all(np.isfinite(nw_loo(x, y, 1e-3)))


def test_kfold_predictions_come_from_the_other_folds(small):
    x, y, h = small
    oof = nw_kfold(x, y, h, k=5, seed=2)
    folds = kfold_ids(len(y), 5, 2)
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    for f in range(5):
        te = folds == f
        np.testing.assert_allclose(oof[te], nw_predict(x[~te], y[~te], x[te], h), rtol=1e-13)
    np.testing.assert_allclose(nw_kfold_grid(x, y, h, (1.0, 2.0), k=5, seed=2)[1],
                               nw_kfold(x, y, 2 * h, k=5, seed=2), rtol=1e-12)


def test_cv_nll_curve_is_the_clipped_kfold_nll(small):
    """Each fold is predicted from the others with Scott's bandwidth for the size it is fitted
    on (not the whole split's), times the multiplier."""
    x, y, _ = small
    curve = cv_nll_curve(x, y, (0.5, 1.0, 2.0), k=5, seed=0)
    folds = kfold_ids(len(y), 5, 0)
    for v, mu in zip(curve, (0.5, 1.0, 2.0)):
        p = np.empty(len(y))
        for f in range(5):
            held = folds == f
            h = scott_factor(int((~held).sum()), 2) * mu
            p[held] = nw_predict(x[~held], y[~held], x[held], h)
        p = np.clip(p, 1e-6, 1 - 1e-6)
        assert v == pytest.approx(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)), rel=1e-12)
    whole = np.clip(nw_kfold(x, y, scott_factor(len(y), 2), k=5, seed=0), 1e-6, 1 - 1e-6)
    assert curve[1] != pytest.approx(-np.mean(y * np.log(whole) + (1 - y) * np.log(1 - whole)),
                                     rel=1e-9)


def test_scott_factor_matches_gaussian_kde():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 1000))
    from scipy.stats import gaussian_kde

    assert scott_factor(1000, 2) == pytest.approx(gaussian_kde(data).factor, rel=1e-12)


def test_recovers_a_known_conditional_probability():
    """P(z = 1 | c, r) = 0.05 + 0.5 c + 0.4 r on the unit square, N = 20,000, bandwidth
    2 x Scott on standardised axes: max error over an interior 7 x 7 grid below 0.05."""
    rng = np.random.default_rng(11)
    n = 20_000
    c, r = rng.uniform(size=n), rng.uniform(size=n)
    z = (rng.random(n) < 0.05 + 0.5 * c + 0.4 * r).astype(float)
    x = np.column_stack([c, r])
    h = 2 * scott_factor(n, 2) * x.std(axis=0, ddof=1)
    g = np.linspace(0.2, 0.8, 7)
    gc, gr = np.meshgrid(g, g)
    p = nw_predict(x, z, np.column_stack([gc.ravel(), gr.ravel()]), h)
    err = np.abs(p - (0.05 + 0.5 * gc.ravel() + 0.4 * gr.ravel()))
    assert err.max() < 0.05


def test_matrix_targets_share_one_kernel_and_equal_separate_calls() -> None:
    rng = np.random.default_rng(5)
    x, xe = rng.normal(size=(300, 2)), rng.normal(size=(50, 2))
    Y = (rng.random((300, 4)) < 0.5).astype(float)
    many = nw_predict_grid(x, Y, xe, 0.4, (0.5, 1.0), chunk_elems=1000)
    assert many.shape == (2, 4, 50)
    for j in range(4):
        np.testing.assert_allclose(many[:, j], nw_predict_grid(x, Y[:, j], xe, 0.4, (0.5, 1.0)),
                                   rtol=1e-12, atol=1e-14)
