"""The planted control: would the diagnostic suite detect a routing-conditional calibration
signal if there were one? (DESIGN section 2, "Planted control"; ours, beyond the paper.)

From a cell's real dumps, keep each example's confidence c and routing feature r, and replace
its correctness by z' ~ Bernoulli(clip(c + delta * s(r), 0, 1)), s the centred rank of r
(`arcal.calibration.planted_correctness`). At delta = 0 the model is calibrated given c and r
says nothing; for delta > 0 examples with high r are more often right than their confidence
says. For each delta and repetition we run what the study runs on real data:

* the within-bin permutation test of r on the test split (rejection at alpha), and
* the matched probes nw-conf (c) and ar-condcal (c, depth_var), fitted on the planted
  calibration split and scored on the planted test split by worst-tertile ECE over tertiles of
  r; `ece_gain` = nw-conf's worst-tertile ECE minus ar-condcal's (positive: routing helps).

NW probes use Scott's rule x `multiplier` (a CV search per repetition would cost 65 fits). Their
kernel weights depend only on the inputs (c, depth_var), so all repetitions share one kernel pass
with the planted labels as columns.
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

COLUMNS = ["feature", "delta", "rep", "p_value", "reject", "tertile_ece_nw_conf",
           "tertile_ece_ar_condcal", "ece_gain"]
SUMMARY_COLUMNS = ["cell", "dataset", "substrate", "variant", "seed", "feature", "delta", "n_rep",
                   "reject_rate", "reject_lo", "reject_hi", "ece_gain_mean", "ece_gain_std"]


def planted_rows(
    calib: cal.ProbeInputs,
    test: cal.ProbeInputs,
    planted: dict[str, Any],
    calibration: dict[str, Any],
    seed: int = 0,
    multiplier: float = 1.0,
) -> pd.DataFrame:
    """One row per (delta, repetition): the permutation test's p-value and decision and the
    worst-tertile ECE of nw-conf and ar-condcal on planted correctness."""
    feature = planted["feature"]
    r_calib, r_test = calib.feature(feature), test.feature(feature)
    n_bins, min_bin = calibration["n_bins"], calibration["min_bin"]
    jobs = [(i, d, rep) for i, d in enumerate(planted["deltas"]) for rep in range(planted["repetitions"])]
    z_calib, z_test, perm_seeds = [], [], []
    for i, delta, rep in jobs:
        rng = np.random.default_rng([seed, i, rep])
        z_calib.append(cal.planted_correctness(calib.conf, r_calib, delta, rng))
        z_test.append(cal.planted_correctness(test.conf, r_test, delta, rng))
        perm_seeds.append(int(rng.integers(2**31)))
    # The probes' kernels depend on the inputs only, not on the labels: every repetition's
    # Nadaraya-Watson fit is one column of a single kernel pass per probe.
    targets = np.column_stack(z_calib)
    worst = {}
    for probe in ("nw-conf", "ar-condcal"):
        nw = cal.make_probe(probe, rule="scott", multiplier=multiplier).fit(calib)
        p = nw.predict_grid(test, (multiplier,), targets)[0]
        worst[probe] = [cal.tertile_ece(p[j], z_test[j], r_test, n_bins).worst for j in range(len(jobs))]
    rows = []
    for j, (i, delta, rep) in enumerate(tqdm(jobs, desc="planted", mininterval=5)):
        res = cal.permutation_test(test.conf, z_test[j], r_test, n_bins, min_bin, planted["n_perm"],
                                   seed=perm_seeds[j])
        gain = worst["nw-conf"][j] - worst["ar-condcal"][j]
        rows.append((feature, float(delta), rep, res.pvalue,
                     bool(np.isfinite(res.pvalue) and res.pvalue <= calibration["alpha"]),
                     worst["nw-conf"][j], worst["ar-condcal"][j], gain))
    return pd.DataFrame(rows, columns=COLUMNS)


def summarise(frames: dict[str, pd.DataFrame], confidence: float = 0.95) -> pd.DataFrame:
    """Per (cell, feature, delta): rejection rate with a Clopper-Pearson interval, and the mean
    and std of the ECE gain. `frames` maps cell ids to `planted_rows` tables."""
    out = []
    for cell, df in frames.items():
        dataset, substrate, variant, seed = cell.split("/")
        for (feature, delta), g in df.groupby(["feature", "delta"], sort=True):
            k, n = int(g["reject"].sum()), len(g)
            ci = binomtest(k, n).proportion_ci(confidence, method="exact")
            out.append((cell, dataset, substrate, variant, int(seed.removeprefix("seed")), feature,
                        delta, n, k / n, ci.low, ci.high, g["ece_gain"].mean(),
                        g["ece_gain"].std(ddof=1) if n > 1 else float("nan")))
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def smallest_detected(summary: pd.DataFrame, power: float = 0.8) -> pd.DataFrame:
    """Per (dataset, substrate, variant, feature): the smallest delta > 0 whose rejection rate,
    pooled over seeds, is at least `power` (NaN where none is)."""
    pooled = (
        summary.assign(k=summary["reject_rate"] * summary["n_rep"])
        .groupby(["dataset", "substrate", "variant", "feature", "delta"], as_index=False)[["k", "n_rep"]]
        .sum()
    )
    pooled["rate"] = pooled["k"] / pooled["n_rep"]
    hits = pooled[(pooled["delta"] > 0) & (pooled["rate"] >= power)]
    first = hits.groupby(["dataset", "substrate", "variant", "feature"])["delta"].min()
    keys = pooled[["dataset", "substrate", "variant", "feature"]].drop_duplicates()
    return keys.merge(first.rename("min_delta").reset_index(), how="left")


def main(argv: list[str] | None = None) -> None:
    args, (calib, test), config = parse_cell_args(
        "python -m arcal.analysis.planted", __doc__, ("calib", "test"), argv
    )
    table = planted_rows(calib, test, config["planted"], config["calibration"], args.seed)
    atomic_write_csv(args.out, table)

if __name__ == "__main__":
    main()
