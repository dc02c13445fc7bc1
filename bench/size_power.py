"""Size and power of the within-bin permutation tests (a script, not a test).

Simulates datasets with ``arcal.calibration.simulation`` (miscalibration shapes c^gamma for
gamma in {1, 2, 3} and over- and under-confident tempered softmaxes, crossed with features that
are independent of c or track it inside the confidence bins at low, medium and high correlation)
and runs both tests of ``arcal.calibration.permutation_test`` on each: the paper's
("within-bin") and the residualised one (the default). Null cells have no planted effect: every
rejection is a false one. Power cells plant a within-bin accuracy difference of 0.02, 0.05 and
0.10 (achieved, beyond the true probability, at matched confidence). N = 5000, 15 bins,
min_bin 30, B = 199 permutations, alpha = 0.05; datasets are spread over worker processes.

Prints one row per cell (rejection rate of each test and its Monte Carlo standard error) and,
last, ``size_paper_max=<r> size_robust_max=<r> power_robust_at_0.10=<r>
power_paper_at_0.10=<r>``: the largest rejection rate over the null cells, and the smallest over
the power cells at effect 0.10.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from arcal.calibration import permutation_test
from arcal.calibration.simulation import FEATURES, SHAPES, simulate

ALPHA = 0.05
METHODS = ("within-bin", "residualised")
EFFECTS = (0.02, 0.05, 0.10)
POWER_SHAPES = ("gamma1", "gamma3", "overconfident")
POWER_FEATURES = ("independent", "high")


def run_cell(args: tuple[str, str, float, int, int, int, int]) -> tuple[str, str, float, dict]:
    """Rejection counts of both tests over ``n_sets`` datasets of one cell."""
    shape, feature, effect, n_sets, n, n_perm, seed = args
    rng = np.random.default_rng([seed, SHAPES.index(shape), list(FEATURES).index(feature),
                                 int(round(effect * 1000))])
    rejected = dict.fromkeys(METHODS, 0)
    for i in range(n_sets):
        data = simulate(n, shape, feature, rng, effect)
        for method in METHODS:
            res = permutation_test(data.conf, data.correct, data.feature, n_perm=n_perm,
                                   seed=i, method=method)
            rejected[method] += bool(res.pvalue <= ALPHA)
    return shape, feature, effect, {m: k / n_sets for m, k in rejected.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--null-sets", type=int, default=1000, help="datasets per null cell")
    ap.add_argument("--power-sets", type=int, default=200, help="datasets per power cell")
    ap.add_argument("--n", type=int, default=5000, help="examples per dataset")
    ap.add_argument("--n-perm", type=int, default=199)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cells = [(s, f, 0.0, args.null_sets) for s in SHAPES for f in FEATURES]
    cells += [(s, f, e, args.power_sets) for e in EFFECTS for s in POWER_SHAPES
              for f in POWER_FEATURES]
    jobs = [(s, f, e, k, args.n, args.n_perm, args.seed) for s, f, e, k in cells]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_cell, jobs))
    print(f"N={args.n} B={args.n_perm} alpha={ALPHA}; {time.perf_counter() - t0:.0f} s on "
          f"{args.workers} workers")
    print(f"{'shape':<15} {'feature':<12} {'effect':>6} {'sets':>5} "
          f"{'paper (within-bin)':>20} {'robust (residualised)':>22}")
    size = {m: 0.0 for m in METHODS}
    power = {m: 1.0 for m in METHODS}
    for (shape, feature, effect, rates), (_, _, _, n_sets) in zip(results, cells):
        se = {m: np.sqrt(max(rates[m] * (1 - rates[m]), 1e-12) / n_sets) for m in METHODS}
        print(f"{shape:<15} {feature:<12} {effect:>6.2f} {n_sets:>5} "
              f"{rates['within-bin']:>13.3f} +- {se['within-bin']:.3f} "
              f"{rates['residualised']:>15.3f} +- {se['residualised']:.3f}")
        for m in METHODS:
            if effect == 0:
                size[m] = max(size[m], rates[m])
            elif effect == 0.10:
                power[m] = min(power[m], rates[m])
    print(f"size_paper_max={size['within-bin']:.3f} size_robust_max={size['residualised']:.3f} "
          f"power_robust_at_0.10={power['residualised']:.3f} "
          f"power_paper_at_0.10={power['within-bin']:.3f}")


if __name__ == "__main__":
    main()
