"""Probes and scores built from feature and matrix names (arcal.calibration): the generic path
computes exactly what the registered routing probes compute, and bad names are errors."""

from __future__ import annotations

import numpy as np
import pytest

from arcal import calibration as cal
from arcal.calibration import ProbeInputs


def _split(seed: int, n: int = 600) -> ProbeInputs:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 4))
    labels = np.where(rng.random(n) < 0.7, logits.argmax(1), rng.integers(0, 4, n))
    H = rng.random((n, 3))
    return ProbeInputs(logits, labels, H=H, r_agg=H.mean(1), depth_var=rng.random(n),
                       extra={"gate": rng.random(n)}, matrices={"A": rng.random((n, 2))})


@pytest.fixture(scope="module")
def splits() -> tuple[ProbeInputs, ProbeInputs]:
    return _split(0), _split(1)


def _renamed(x: ProbeInputs) -> ProbeInputs:
    """The same split with depth_var served as the extra feature "dv" and H as the matrix "M"."""
    return ProbeInputs(x.logits, x.labels, extra={"dv": x.depth_var}, matrices={"M": x.H})


def test_nw_probe_of_a_named_feature_equals_the_registered_one(splits) -> None:
    calib, test = splits
    opts = dict(rule="cv-nll", grid=(0.5, 1.0, 2.0), n_folds=5, seed=3)
    want = cal.make_probe("ar-condcal", **opts).fit(calib)
    got = cal.make_probe("nw-dv", **opts).fit(_renamed(calib))
    assert got.name == "nw-dv" and got.features == ("conf", "dv")
    np.testing.assert_array_equal(got.predict(_renamed(test)), want.predict(test))
    assert got.multiplier_ == want.multiplier_ and got.n_params == want.n_params == 2


def test_mlp_probes_on_a_named_matrix_equal_those_on_H(splits) -> None:
    calib, test = splits
    for kind in ("full", "conf", "shuffled"):
        want = cal.make_probe(f"mlp-{kind}", seed=2, max_epochs=20).fit(calib)
        got = cal.make_probe(f"mlp-{kind}@M", seed=2, max_epochs=20).fit(_renamed(calib))
        assert got.name == f"mlp-{kind}@M"
        np.testing.assert_array_equal(got.predict(_renamed(test)), want.predict(test))
        assert got.n_params == want.n_params


def test_scores_by_a_named_feature_equal_those_by_depth_var(splits) -> None:
    _, test = splits
    conf = np.clip(test.conf * 0.9, 0, 1)
    want = cal.score_confidence(conf, test.correct, depth_var=test.depth_var)
    got = cal.score_confidence(conf, test.correct, features={"dv": test.depth_var})
    assert {k.replace("depth_var", "dv"): v for k, v in want.items()} == got
    both = cal.score_confidence(conf, test.correct, test.r_agg, test.depth_var,
                                features={"gate": test.feature("gate")})
    assert list(both)[:9] == list(cal.score_confidence(conf, test.correct, test.r_agg,
                                                       test.depth_var))[:9]
    assert "tertile_ece_gate_high" in both
    with pytest.raises(ValueError, match="'depth_var' is given twice"):
        cal.score_confidence(conf, test.correct, depth_var=test.depth_var,
                             features={"depth_var": test.depth_var})


def test_the_bandwidth_sweep_of_a_named_feature_equals_the_registered_one(splits) -> None:
    calib, test = splits
    args = ((0.5, 1.0), (0.5, 1.0, 2.0), 5, 1, 15)
    want = cal.bandwidth_sweep(calib, test, "ar-condcal", *args, features=["depth_var"])
    got = cal.bandwidth_sweep(_renamed(calib), _renamed(test), "nw-dv", *args, features=["dv"])
    assert [(r["rule"], r["multiplier"], r["metric"].replace("dv", "depth_var"), r["value"])
            for r in got] == [(r["rule"], r["multiplier"], r["metric"], r["value"]) for r in want]


def test_probe_names() -> None:
    assert [cal.nw_probe_name(f) for f in ("entropy", "r_agg", "depth_var", "gate")] == [
        "nw-entropy", "nw-ragg", "ar-condcal", "nw-gate"]
    assert cal.nw_features("nw-conf") == ("conf",) and cal.nw_features("nw-ragg") == ("conf", "r_agg")
    assert cal.nw_features("nw-gate_2") == ("conf", "gate_2") and cal.nw_features("mlp-full") is None
    assert cal.mlp_probe_name("full") == "mlp-full" and cal.mlp_probe_name("conf", "A") == "mlp-conf@A"
    for bad in ("nw-", "nw-2x", "nw-conf2 x", "mlp-big@A", "mlp-full@", "foo"):
        with pytest.raises(ValueError, match="unknown probe"):
            cal.make_probe(bad)
    for reserved in ("conf", "ragg"):
        with pytest.raises(ValueError, match="no NW probe pairs it"):
            cal.nw_probe_name(reserved)


def test_probe_inputs_check_named_features_and_matrices() -> None:
    logits, labels = np.zeros((5, 3)), np.zeros(5, int)
    for extra, match in (({"entropy": np.ones(5)}, "reserved"), ({"r_agg": np.ones(5)}, "reserved"),
                         ({"a b": np.ones(5)}, "names must start with a letter"),
                         ({"g": np.ones(4)}, "length 4 does not match"),
                         ({"g": np.array([1, np.nan, 1, 1, 1])}, "non-finite")):
        with pytest.raises(ValueError, match=match):
            ProbeInputs(logits, labels, extra=extra)
    with pytest.raises(ValueError, match="at least one column"):
        ProbeInputs(logits, labels, matrices={"A": np.zeros((5, 0))})
    x = ProbeInputs(logits, labels, extra={"g": np.arange(5.0)})
    with pytest.raises(ValueError, match=r"unknown name 'h'; this split has conf, entropy, g"):
        x.feature("h")
    with pytest.raises(ValueError, match=r"matrix: unknown name 'A'; this split has H"):
        x.matrix("A")
    assert x.matrix("H") is None
