"""The planted control: would the diagnostic suite detect a routing-conditional calibration
signal if there were one? (docs/methods.md, "Planted control"; ours, beyond the paper.)

From a cell's real dumps keep each example's confidence c and routing feature r, fit a
confidence-only calibration map m on the calibration split, and replace correctness by
z' ~ Bernoulli(expit(logit m(c) + delta * s)), s the centred rank of r inside its confidence
bin (`arcal.calibration.planted_probability`). At delta = 0 the model keeps its real
miscalibration and r says nothing beyond c, so the rejection rate is each test's size under a
realistic null; for delta > 0 high-r examples are right more often than m(c) says. Next to the
nominal delta (logit units) each row carries the *achieved* within-bin effect on the test split
(`arcal.calibration.achieved_effect`, accuracy units). For each delta and repetition we run
what the study runs on real data:

* both within-bin permutation tests of r on the test split (the paper's and the residualised
  one; rejection at alpha), and
* the matched probes nw-conf (c) and the NW probe on (c, r) (ar-condcal for depth_var, nw-ragg
  for r_agg), fitted on the planted calibration split and scored on the planted test split by
  worst-tertile ECE over tertiles of r; `ece_gain` = nw-conf's minus the routing probe's
  (positive: routing helps).

NW probes use Scott's rule x `multiplier` (a CV search per repetition would cost 65 fits). Their
kernel weights depend only on the inputs, so all repetitions share one kernel pass with the
planted labels as columns.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest
from tqdm import tqdm

from arcal import calibration as cal
from arcal.analysis.cli import parse_cell_args
from arcal.io import atomic_write_csv

log = logging.getLogger(__name__)

#: The NW probe that pairs confidence with each routing feature (any other feature, e.g. an
#: audited model's trace, gets ``nw-<feature>``: ``arcal.calibration.nw_probe_name``).
ROUTING_PROBE = {"depth_var": "ar-condcal", "r_agg": "nw-ragg"}
COLUMNS = ["feature", "delta", "achieved_effect", "rep", "method", "ran", "p_value", "reject",
           "routing_probe", "tertile_ece_nw_conf", "tertile_ece_routing", "ece_gain"]
SUMMARY_COLUMNS = ["cell", "dataset", "substrate", "variant", "seed", "feature", "delta",
                   "achieved_effect", "method", "n_rep", "n_ran", "reject_rate", "reject_lo",
                   "reject_hi", "ece_gain_mean", "ece_gain_std"]


def planted_rows(
    calib: cal.ProbeInputs,
    test: cal.ProbeInputs,
    planted: dict[str, Any],
    calibration: dict[str, Any],
    seed: int = 0,
    multiplier: float = 1.0,
) -> pd.DataFrame:
    """One row per (delta, repetition, test method): p-value and decision, the achieved effect,
    and the worst-tertile ECE of nw-conf and of the routing probe on planted correctness."""
    feature = planted["feature"]
    probe = cal.nw_probe_name(feature)
    r_calib, r_test = calib.feature(feature), test.feature(feature)
    n_bins, min_bin = calibration["n_bins"], calibration["min_bin"]
    confidence_map = cal.ConfidenceMap().fit(calib.conf, calib.correct)
    base_calib, base_test = confidence_map.predict(calib.conf), confidence_map.predict(test.conf)
    jobs, z_calib, z_test, perm_seeds = [], [], [], []
    for i, delta in enumerate(planted["deltas"]):
        p_calib = cal.planted_probability(base_calib, calib.conf, r_calib, delta, n_bins)
        p_test = cal.planted_probability(base_test, test.conf, r_test, delta, n_bins)
        achieved = cal.achieved_effect(base_test, p_test, test.conf, r_test, n_bins, min_bin)
        log.info("delta %g (logit): achieved within-bin effect %.4f", delta, achieved)
        for rep in range(planted["repetitions"]):
            rng = np.random.default_rng([seed, i, rep])
            z_calib.append((rng.random(calib.n) < p_calib).astype(np.float64))
            z_test.append((rng.random(test.n) < p_test).astype(np.float64))
            perm_seeds.append(int(rng.integers(2**31)))
            jobs.append((float(delta), achieved, rep))
    # The probes' kernels depend on the inputs only, not on the labels: every repetition's
    # Nadaraya-Watson fit is one column of a single kernel pass per probe.
    targets = np.column_stack(z_calib)
    worst = {}
    for name in ("nw-conf", probe):
        nw = cal.make_probe(name, rule="scott", multiplier=multiplier).fit(calib)
        p = nw.predict_grid(test, (multiplier,), targets)[0]
        worst[name] = [cal.tertile_ece(p[j], z_test[j], r_test, n_bins).worst
                       for j in range(len(jobs))]
    rows = []
    for j, (delta, achieved, rep) in enumerate(tqdm(jobs, desc="planted", mininterval=5)):
        for method in calibration["test_methods"]:
            res = cal.permutation_test(test.conf, z_test[j], r_test, n_bins, min_bin,
                                       planted["n_perm"], seed=perm_seeds[j], method=method)
            reject = bool(res.pvalue <= calibration["alpha"]) if res.ran else pd.NA
            rows.append((feature, delta, achieved, rep, method, res.ran, res.pvalue, reject,
                         probe, worst["nw-conf"][j], worst[probe][j],
                         worst["nw-conf"][j] - worst[probe][j]))
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["reject"] = table["reject"].astype("boolean")
    return table


def summarise(frames: dict[str, pd.DataFrame], confidence: float = 0.95) -> pd.DataFrame:
    """Per (cell, feature, delta, method): rejection rate over the repetitions whose test ran,
    with a Clopper-Pearson interval, and the mean and std of the ECE gain. `frames` maps cell
    ids to `planted_rows` tables."""
    out = []
    for cell, df in frames.items():
        dataset, substrate, variant, seed = cell.split("/")
        keys = ["feature", "delta", "achieved_effect", "method"]
        for (feature, delta, achieved, method), g in df.groupby(keys, sort=True):
            ran = g[g["ran"].astype(bool)]
            k, n = int(ran["reject"].astype(bool).sum()), len(ran)
            ci = binomtest(k, n).proportion_ci(confidence, method="exact") if n else None
            lo, hi = (ci.low, ci.high) if ci else (float("nan"), float("nan"))
            out.append((cell, dataset, substrate, variant, int(seed.removeprefix("seed")), feature,
                        delta, achieved, method, len(g), n, k / n if n else float("nan"),
                        float(lo), float(hi), g["ece_gain"].mean(),
                        g["ece_gain"].std(ddof=1) if len(g) > 1 else float("nan")))
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def main(argv: list[str] | None = None) -> None:
    args, (calib, test), config = parse_cell_args(
        "python -m arcal.analysis.planted", __doc__, ("calib", "test"), argv,
        blocks=("planted", "calibration"),
    )
    table = planted_rows(calib, test, config["planted"], config["calibration"], args.seed)
    atomic_write_csv(args.out, table)

if __name__ == "__main__":
    main()
