"""Probes: temperature, linear-conf, Nadaraya-Watson rules, MLPs, registry, bandwidth sweep."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import softmax

from arcal.calibration import (
    CV_MULTIPLIERS,
    METRICS,
    PROBES,
    SCOTT_MULTIPLIERS,
    ProbeInputs,
    bandwidth_sweep,
    ece,
    fit_temperature,
    make_probe,
    matched_width,
    mlp_param_count,
    score_confidence,
    tertile_ece,
)


def _split(seed: int, n: int, n_classes: int = 5, L: int = 4, signal: float = 0.0) -> ProbeInputs:
    """Logits with a temperature of 2 relative to the labels, plus routing features; with
    ``signal`` > 0 the first routing entropy H_1 also predicts correctness."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(n, n_classes))
    labels = np.array([rng.choice(n_classes, p=p) for p in softmax(logits / 2.0, axis=1)])
    H = rng.uniform(size=(n, L))
    if signal:
        correct = logits.argmax(1) == labels
        H[:, 0] = np.clip(H[:, 0] * (1 - signal) + signal * correct, 0, 1)
    return ProbeInputs(logits, labels, H=H, r_agg=H.mean(1), depth_var=rng.uniform(size=n))


@pytest.fixture(scope="module")
def calib():
    return _split(0, 1500)


@pytest.fixture(scope="module")
def test_split():
    return _split(1, 1500)


def test_temperature_matches_sklearn_and_recovers_the_true_value():
    sk_cal = pytest.importorskip("sklearn.calibration")
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.frozen import FrozenEstimator

    class Passthrough(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def decision_function(self, X):
            return X

        def predict(self, X):
            return self.classes_[np.argmax(X, axis=1)]

    big = _split(3, 20_000)
    t_ours = fit_temperature(big.logits, big.labels)
    assert t_ours == pytest.approx(2.0, abs=0.06)
    clf = Passthrough().fit(big.logits, big.labels)
    cal = sk_cal.CalibratedClassifierCV(FrozenEstimator(clf), method="temperature")
    cal.fit(big.logits, big.labels)
    t_sk = 1.0 / cal.calibrated_classifiers_[0].calibrators[0].beta_
    assert t_ours == pytest.approx(t_sk, abs=1e-5)
    probe = make_probe("temperature").fit(big)
    assert probe.temperature_ == t_ours and probe.n_params == 1
    assert ece(probe.predict(big), big.correct) < 0.5 * ece(big.conf, big.correct)


def test_linear_conf_matches_sklearn_logistic_regression(calib, test_split):
    lm = pytest.importorskip("sklearn.linear_model")
    probe = make_probe("linear-conf").fit(calib)
    c = np.clip(calib.conf, 1e-12, 1 - 1e-12)
    x = np.log(c / (1 - c))[:, None]
    ref = lm.LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x, calib.correct)
    np.testing.assert_allclose(probe.coef_, [ref.intercept_[0], ref.coef_[0, 0]], rtol=1e-5)
    ct = np.clip(test_split.conf, 1e-12, 1 - 1e-12)
    np.testing.assert_allclose(probe.predict(test_split),
                               ref.predict_proba(np.log(ct / (1 - ct))[:, None])[:, 1], atol=1e-6)


def test_linear_conf_all_correct_predicts_the_clipped_rate():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3))
    inputs = ProbeInputs(logits, logits.argmax(1))
    p = make_probe("linear-conf").fit(inputs).predict(inputs)
    np.testing.assert_allclose(p, 1 - 1e-6)


def test_nw_rules(calib, test_split):
    scott = make_probe("ar-condcal", rule="scott", multiplier=2.0).fit(calib)
    assert scott.multiplier_ == 2.0 and scott.n_params == 2 and not scott.is_oracle
    cv = make_probe("ar-condcal", rule="cv-nll", seed=3).fit(calib)
    assert cv.multiplier_ == CV_MULTIPLIERS[int(np.argmin(cv.cv_nll_))]
    assert cv.cv_nll_.shape == (13,)
    oracle = make_probe("ar-condcal", rule="oracle").fit(calib)
    p = oracle.predict(test_split)
    assert oracle.is_oracle
    eces = [ece(q, test_split.correct) for q in scott.predict_grid(test_split, CV_MULTIPLIERS)]
    assert ece(p, test_split.correct) == pytest.approx(min(eces))
    for probe in (scott, cv, oracle):
        q = probe.predict(test_split)
        assert q.min() >= 1e-6 and q.max() <= 1 - 1e-6
    # the NW probes improve on the raw (temperature-2 miscalibrated) confidence
    raw = ece(test_split.conf, test_split.correct)
    assert ece(cv.predict(test_split), test_split.correct) < 0.5 * raw


def test_nw_targets_equal_fits_on_relabelled_splits(calib, test_split):
    """Many labellings of one calibration split in one pass == one fit per labelling."""
    rng = np.random.default_rng(5)
    targets = (rng.random((calib.n, 3)) < calib.conf[:, None]).astype(float)
    probe = make_probe("ar-condcal", rule="scott", multiplier=1.5).fit(calib)
    many = probe.predict_grid(test_split, (1.5,), targets)[0]
    assert many.shape == (3, test_split.n)
    k = calib.logits.shape[1]
    for j in range(3):
        labels = np.where(targets[:, j] > 0.5, calib.pred, (calib.pred + 1) % k)
        relabelled = ProbeInputs(calib.logits, labels, H=calib.H, r_agg=calib.r_agg,
                                 depth_var=calib.depth_var)
        one = make_probe("ar-condcal", rule="scott", multiplier=1.5).fit(relabelled)
        np.testing.assert_allclose(many[j], one.predict(test_split), rtol=1e-12)


def test_nw_probe_with_a_constant_feature_equals_the_confidence_only_probe(calib, test_split):
    const = ProbeInputs(calib.logits, calib.labels, depth_var=np.ones(calib.n))
    const_t = ProbeInputs(test_split.logits, test_split.labels, depth_var=np.ones(test_split.n))
    a = make_probe("ar-condcal", rule="scott").fit(const).predict(const_t)
    nw = make_probe("nw-conf", rule="scott").fit(calib)
    nw.h_ = calib.n ** (-1 / 6)  # same bandwidth as the 2-D probe on the live axis
    np.testing.assert_allclose(a, nw.predict(test_split), rtol=1e-12)


def test_mlp_parameter_matching():
    for L in (1, 4, 12, 24, 48):
        for width in (16, 64):
            full = mlp_param_count(1 + L, width)
            conf = mlp_param_count(1, matched_width(full, 1))
            assert abs(conf - full) <= 0.05 * full


def test_mlp_probes(calib, test_split):
    kw = dict(width=16, max_epochs=40, patience=5, seed=1)
    full = make_probe("mlp-full", **kw).fit(calib)
    conf = make_probe("mlp-conf", **kw).fit(calib)
    shuf = make_probe("mlp-shuffled", **kw).fit(calib)
    assert full.n_params == mlp_param_count(5, 16)
    assert abs(conf.n_params - full.n_params) <= 0.05 * full.n_params
    assert shuf.n_params == full.n_params
    again = make_probe("mlp-full", **kw).fit(calib)
    np.testing.assert_array_equal(full.predict(test_split), again.predict(test_split))
    for probe in (full, conf, shuf):
        p = probe.predict(test_split)
        assert p.shape == (test_split.n,) and p.min() >= 1e-6 and p.max() <= 1 - 1e-6
    assert not np.allclose(full.predict(test_split), shuf.predict(test_split))


def test_mlp_full_uses_routing_signal_when_there_is_one():
    cal, te = _split(5, 2000, signal=0.6), _split(6, 2000, signal=0.6)
    kw = dict(width=16, max_epochs=60, patience=8, seed=0)
    full = make_probe("mlp-full", **kw).fit(cal).predict(te)
    conf = make_probe("mlp-conf", **kw).fit(cal).predict(te)
    shuf = make_probe("mlp-shuffled", **kw).fit(cal).predict(te)
    s_full, s_conf, s_shuf = (score_confidence(p, te.correct)["nll"] for p in (full, conf, shuf))
    assert s_full < s_conf - 0.05 and s_full < s_shuf - 0.05


def test_registry_and_raw(calib, test_split):
    assert set(PROBES) == {"raw", "temperature", "nw-conf", "nw-entropy", "nw-ragg", "ar-condcal",
                           "linear-conf", "mlp-full", "mlp-conf", "mlp-shuffled"}
    raw = make_probe("raw").fit(calib)
    np.testing.assert_array_equal(raw.predict(test_split), test_split.conf)
    assert raw.n_params == 0
    with pytest.raises(ValueError, match="name"):
        make_probe("nope")
    with pytest.raises(ValueError, match="rule"):
        make_probe("nw-conf", rule="silverman")
    with pytest.raises(ValueError, match="kwargs"):
        make_probe("raw", width=3)
    with pytest.raises(ValueError, match="fit"):
        make_probe("temperature").predict(test_split)
    baseline = ProbeInputs(calib.logits, calib.labels)
    with pytest.raises(ValueError, match="depth_var"):
        make_probe("ar-condcal").fit(baseline)
    with pytest.raises(ValueError, match="H"):
        make_probe("mlp-full").fit(baseline)


def test_probe_inputs_derived_quantities_and_from_dump(calib):
    p = softmax(calib.logits, axis=1)
    np.testing.assert_allclose(calib.probs, p, rtol=1e-12)
    np.testing.assert_allclose(calib.conf, p.max(1), rtol=1e-12)
    np.testing.assert_allclose(calib.entropy, -(p * np.log(p)).sum(1), rtol=1e-10)

    class Dump:
        logits = calib.logits.astype(np.float32)
        labels = calib.labels
        H = np.zeros((calib.n, 0), dtype=np.float32)
        r_agg = np.full(calib.n, np.nan)
        depth_var = np.full(calib.n, np.nan)

    inputs = ProbeInputs.from_dump(Dump())
    assert inputs.H is None and inputs.r_agg is None and inputs.depth_var is None
    with pytest.raises(ValueError, match="r_agg"):
        ProbeInputs(calib.logits, calib.labels, r_agg=np.full(calib.n, np.nan))


def test_score_confidence(test_split):
    conf = test_split.conf
    s = score_confidence(conf, test_split.correct, r_agg=test_split.r_agg,
                         depth_var=test_split.depth_var)
    assert list(s) == list(METRICS)
    assert s["ece"] == pytest.approx(ece(conf, test_split.correct))
    assert set(score_confidence(conf, test_split.correct)) == {"ece", "smooth_ece", "nll", "brier"}
    for name in ("depth_var", "r_agg"):
        t = tertile_ece(conf, test_split.correct, getattr(test_split, name))
        assert [s[f"tertile_ece_{name}_{p}"] for p in ("low", "mid", "high")] == list(t.values)
        assert s[f"tertile_ece_{name}"] == t.worst == max(t.values)
    ten = score_confidence(conf, test_split.correct, depth_var=test_split.depth_var, n_bins=10)
    assert ten["ece"] == pytest.approx(ece(conf, test_split.correct, n_bins=10))
    assert ten["tertile_ece_depth_var"] == pytest.approx(
        tertile_ece(conf, test_split.correct, test_split.depth_var, n_bins=10).worst)


def test_bandwidth_sweep_rows(calib, test_split):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = bandwidth_sweep(calib, test_split, "ar-condcal", seed=0)
    rules = {r["rule"] for r in rows}
    assert rules == {"scott", "cv-nll-curve", "cv-nll", "grid", "oracle"}
    scott = [r for r in rows if r["rule"] == "scott" and r["metric"] == "ece"]
    assert [r["multiplier"] for r in scott] == list(SCOTT_MULTIPLIERS)
    curve = [r["value"] for r in rows if r["rule"] == "cv-nll-curve"]
    cv = make_probe("ar-condcal", rule="cv-nll", seed=0).fit(calib)
    np.testing.assert_allclose(curve, cv.cv_nll_, rtol=1e-12)
    chosen = [r for r in rows if r["rule"] == "cv-nll" and r["metric"] == "ece"][0]
    assert chosen["multiplier"] == cv.multiplier_
    assert chosen["value"] == pytest.approx(ece(cv.predict(test_split), test_split.correct))
    grid_ece = [r["value"] for r in rows if r["rule"] == "grid" and r["metric"] == "ece"]
    oracle = [r for r in rows if r["rule"] == "oracle" and r["metric"] == "ece"][0]
    assert oracle["value"] == min(grid_ece)
    with pytest.raises(ValueError, match="probe"):
        bandwidth_sweep(calib, test_split, "mlp-full")


def test_n_bins_reaches_the_oracle_and_the_sweep(calib, test_split):
    """The oracle minimises the ECE of the configured number of bins, everywhere it is used."""
    rows = bandwidth_sweep(calib, test_split, "nw-conf", seed=0, n_bins=4)
    grid = {r["multiplier"]: r["value"] for r in rows if r["rule"] == "grid" and r["metric"] == "ece"}
    preds = make_probe("nw-conf", rule="scott").fit(calib).predict_grid(test_split, CV_MULTIPLIERS)
    for m, p in zip(CV_MULTIPLIERS, preds):
        assert grid[m] == pytest.approx(ece(p, test_split.correct, n_bins=4))
    oracle = make_probe("nw-conf", rule="oracle", n_bins=4).fit(calib)
    oracle.predict(test_split)
    assert oracle.multiplier_ == min(grid, key=grid.get)
    row = [r for r in rows if r["rule"] == "oracle" and r["metric"] == "ece"][0]
    assert row["multiplier"] == oracle.multiplier_
