"""Binned and proper-scoring metrics against netcal, relplot, scikit-learn and hand values."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from scipy.stats import rankdata

from arcal.calibration import (
    bin_index,
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
    top_label,
)

netcal_metrics = pytest.importorskip("netcal.metrics")
sk_metrics = pytest.importorskip("sklearn.metrics")
relplot = pytest.importorskip("relplot")


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_main_set_has_gaps_of_both_signs(main_set):
    idx = bin_index(main_set.conf, 15)
    gaps = [main_set.correct[idx == k].mean() - main_set.conf[idx == k].mean()
            for k in range(15) if np.sum(idx == k) >= 20]
    assert max(gaps) > 0.05 and min(gaps) < -0.01
    # so ECE is not just |mean conf - accuracy|
    offset = abs(main_set.conf.mean() - main_set.correct.mean())
    assert ece(main_set.conf, main_set.correct) > offset + 0.02


def test_ece_and_mce_match_netcal_and_recorded_values(main_set):
    c, z = main_set.conf, main_set.correct
    ref_ece = _quiet(netcal_metrics.ECE(bins=15).measure, c, z)
    ref_mce = _quiet(netcal_metrics.MCE(bins=15).measure, c, z)
    assert ece(c, z) == pytest.approx(ref_ece, abs=1e-12)
    assert mce(c, z, min_count=1) == pytest.approx(ref_mce, abs=1e-12)
    # reference numbers recorded for this generator when the suite was written
    assert ece(c, z) == pytest.approx(0.100817156978, abs=1e-11)
    assert mce(c, z, min_count=1) == pytest.approx(0.330995363918, abs=1e-11)
    # multiclass probabilities through netcal give the same top-label ECE
    assert ece(c, z) == pytest.approx(_quiet(netcal_metrics.ECE(bins=15).measure,
                                             main_set.probs, main_set.labels), abs=1e-12)


def test_mce_ignores_small_bins():
    c = np.array([0.05] * 4 + [0.95] * 10)
    z = np.array([1.0] * 4 + [1.0] * 10)
    assert mce(c, z, min_count=5) == pytest.approx(0.05)
    assert mce(c, z, min_count=1) == pytest.approx(0.95)
    assert np.isnan(mce(c, z, min_count=50))


def test_classwise_ece_matches_per_class_netcal(main_set):
    p, y = main_set.probs, main_set.labels
    per_class = [_quiet(netcal_metrics.ECE(bins=15).measure, p[:, j], (y == j).astype(int))
                 for j in range(p.shape[1])]
    assert classwise_ece(p, y) == pytest.approx(np.mean(per_class), abs=1e-12)
    assert classwise_ece(p, y) == pytest.approx(0.020933967607, abs=1e-11)


def test_smooth_ece_is_relplot(main_set):
    c, z = main_set.conf, main_set.correct
    assert smooth_ece(c, z) == pytest.approx(float(relplot.smECE(c, z)), abs=1e-15)
    assert smooth_ece(c, z) == pytest.approx(0.092756788657, abs=1e-10)


def test_smooth_ece_loads_relplot_metrics_alone_and_a_later_import_gets_the_whole_package():
    """In a fresh process (a workflow job): no plotting stack is imported, and ``import relplot``
    afterwards runs the package in full around the same ``relplot.metrics``."""
    code = textwrap.dedent('''
        import sys
        import numpy as np
        from arcal.calibration import smooth_ece
        rng = np.random.default_rng(0)
        c = rng.uniform(0.3, 1.0, 2000)
        z = (rng.random(2000) < c ** 2).astype(float)
        ours = smooth_ece(c, z)
        heavy = sorted(m for m in ("matplotlib", "seaborn", "sklearn", "relplot") if m in sys.modules)
        assert not heavy, heavy
        import relplot
        assert relplot.metrics is sys.modules["relplot.metrics"]
        assert callable(relplot.rel_diagram)
        assert float(relplot.smECE(c, z)) == ours
        print("ok", ours)
    ''')
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ok 0.")


def test_nll_and_brier_match_sklearn(main_set):
    p, y = main_set.probs, main_set.labels
    labels = list(range(p.shape[1]))
    assert nll(p, y) == pytest.approx(sk_metrics.log_loss(y, p, labels=labels), rel=1e-12)
    assert brier(p, y) == pytest.approx(sk_metrics.brier_score_loss(y, p, labels=labels), rel=1e-12)
    assert nll(p, y) == pytest.approx(0.949422430620, abs=1e-11)
    c, z = main_set.conf, main_set.correct
    assert binary_nll(c, z) == pytest.approx(sk_metrics.log_loss(z, c), rel=1e-12)
    assert binary_brier(c, z) == pytest.approx(sk_metrics.brier_score_loss(z, c), rel=1e-12)


def test_nll_from_logits_is_exact_where_probabilities_underflow(main_set):
    """nll_logits equals scikit-learn's log_loss on ordinary logits, and keeps the full penalty of
    a confidently wrong prediction, which probabilities (and log_loss's eps clip) cannot."""
    labels = list(range(main_set.logits.shape[1]))
    ref = sk_metrics.log_loss(main_set.labels, main_set.probs, labels=labels)
    assert nll_logits(main_set.logits, main_set.labels) == pytest.approx(ref, rel=1e-12)
    logits = np.array([[0.0, 800.0], [3.0, 0.0]])
    y = np.array([0, 0])
    exact = (800.0 + np.log1p(np.exp(-800.0)) + np.log1p(np.exp(-3.0))) / 2
    assert nll_logits(logits, y) == pytest.approx(exact, rel=1e-15)
    capped = nll(np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)), y)
    assert capped < 20  # what the probability version can report at most for row 0


def test_tertile_ece_matches_netcal_dece_map(main_set):
    c, z, r = main_set.conf, main_set.correct, main_set.route
    u = (rankdata(r, method="ordinal") - 0.5) / r.shape[0]
    _, ref_map = _quiet(netcal_metrics.ECE(bins=[15, 3], detection=True).measure,
                        np.column_stack([c, u]), z, return_map=True)
    res = tertile_ece(c, z, r)
    np.testing.assert_allclose(res.values, ref_map, atol=1e-12)
    assert res.worst == pytest.approx(0.106892083001, abs=1e-11)
    assert sum(res.counts) == c.shape[0] and max(res.counts) - min(res.counts) <= 1


def test_tertile_ece_constant_and_reversed_feature(main_set):
    c, z = main_set.conf[:999], main_set.correct[:999]
    const = tertile_ece(c, z, np.zeros(999))
    assert const.counts == (333, 333, 333)
    rev = tertile_ece(c, z, -np.arange(999.0))
    fwd = tertile_ece(c, z, np.arange(999.0))
    assert rev.values == fwd.values[::-1]


# ---- edge sets A, B, C: values on and around the bin edges ------------------------------------

def test_edge_set_a_values_on_every_edge():
    rng = np.random.default_rng(0)
    edges = np.linspace(0, 1, 16)
    c = np.concatenate([np.repeat(edges[1:], 40), rng.uniform(0, 1, 400)])
    z = (rng.uniform(size=c.shape[0]) < np.clip(c - 0.1, 0, 1)).astype(float)
    assert np.sum(c == 1.0) == 40
    ref = _quiet(netcal_metrics.ECE(bins=15).measure, c, z)
    assert ece(c, z) == pytest.approx(ref, abs=1e-12)
    # hand left-closed reference: interior edge k/15 belongs to bin k, 1.0 to bin 14
    idx = np.minimum(np.searchsorted(edges, c, side="right") - 1, 14)
    hand = sum(abs(z[idx == k].sum() - c[idx == k].sum()) for k in range(15)) / c.shape[0]
    assert ece(c, z) == pytest.approx(hand, abs=1e-12)
    # and differs from the right-closed convention on this set
    idx_r = np.maximum(np.searchsorted(edges, c, side="left") - 1, 0)
    right = sum(abs(z[idx_r == k].sum() - c[idx_r == k].sum()) for k in range(15)) / c.shape[0]
    assert abs(ece(c, z) - right) > 1e-5


def test_edge_set_b_confidence_one_shares_the_last_bin():
    c = np.array([0.95] * 50 + [1.0] * 50)
    z = np.array([1.0] * 50 + [1.0] * 45 + [0.0] * 5)
    assert ece(c, z) == pytest.approx(0.025, abs=1e-12)
    assert bin_index(np.array([1.0]), 15)[0] == 14


def test_edge_set_c_interior_edge_goes_up():
    edge = np.linspace(0, 1, 16)[2]
    c = np.array([edge] * 50 + [edge - 0.01] * 50)
    z = np.array([0.0] * 50 + [1.0] * 10 + [0.0] * 40)
    assert ece(c, z) == pytest.approx(0.105, abs=1e-12)
    assert list(bin_index(np.array([edge, edge - 1e-12]), 15)) == [2, 1]


def test_float32_saturated_confidence_is_one():
    logits = np.array([[30.0, 0.0, -5.0], [0.0, 25.0, 1.0], [1.0, 0.5, 0.0]], dtype=np.float32)
    p32 = np.exp(logits - logits.max(1, keepdims=True))
    p32 /= p32.sum(1, keepdims=True)
    c32 = p32.max(1).astype(np.float64)
    assert np.sum(c32 == 1.0) == 2
    z = np.array([1.0, 0.0, 1.0])
    ref = _quiet(netcal_metrics.ECE(bins=15).measure, c32, z)
    assert ece(c32, z) == pytest.approx(ref, abs=1e-6)  # netcal clips 1.0 to 1 - eps
    conf, pred, ent = top_label(logits)
    assert list(pred) == [0, 1, 0] and np.all(conf <= 1.0) and np.all(ent >= 0)


def test_degenerate_inputs():
    c = np.array([0.3, 0.9])  # fewer examples than bins, 13 empty bins
    assert ece(c, np.array([1.0, 1.0])) == pytest.approx((0.7 + 0.1) / 2)
    all_correct = np.ones(100)
    cc = np.linspace(0.5, 1.0, 100)
    assert ece(cc, all_correct) == pytest.approx(1 - cc.mean())
    assert ece(cc, all_correct, n_bins=1) == pytest.approx(1 - cc.mean())
    assert binary_nll(np.ones(3), np.ones(3)) == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(binary_nll(np.ones(3), np.zeros(3)))
