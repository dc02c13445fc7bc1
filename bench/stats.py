"""Benchmark of the statistics core against the reference libraries (a script, not a test).

1. Within-bin permutation tests, N = 10,000 examples, B = 10,000 permutations
   (``arcal.calibration.permutation_test``, both methods: the paper's "within-bin" and the
   default "residualised", which adds a cross-fitted confidence map) against
   ``scipy.stats.permutation_test`` doing the same within-bin permutation: scipy has no strata,
   so it is run once per confidence bin
   (``permutation_type="pairings"`` permutes the bin's feature, the statistic ranks it and takes
   the third means) and the per-bin null distributions are summed with the bin weights, which is
   the same null because bins are permuted independently. scipy runs B_scipy permutations; its
   time is scaled by B / B_scipy.
2. CV-NLL bandwidth sweep of the 2-D Nadaraya-Watson probe at N = 5,000 (13 multipliers,
   5 folds, exact) against statsmodels' own bandwidth search ``KernelReg(reg_type="lc",
   bw="cv_ls")`` at a smaller N, its time scaled by (5000 / N_statsmodels)^2 (both are O(N^2)).
   The sweep's out-of-fold predictions are also timed with 32 MB chunks of kernel entries (the
   default before ``CHUNK_ELEMS``), against the cache-sized default, on the same data.

Last line: ``perm_seconds=<s> perm_speedup_vs_scipy=<r> robust_seconds=<s>
robust_speedup_vs_scipy=<r> cvnll_seconds=<s> nw_speedup_vs_statsmodels=<r>
chunk_speedup_vs_32mb=<r>`` (one line;
``perm_*`` is the paper's test, ``robust_*`` the residualised one, both against the same scipy
baseline).
Our timings are the median of ``--repeats`` runs; the reference libraries run once.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import stats
from scipy.special import softmax

from arcal.calibration import (CV_MULTIPLIERS, bin_index, cv_nll_curve, matched_gaps, nw_kfold_grid,
                               permutation_test, scott_factor)


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidence, correctness and an uninformative feature (the generator of tests/calibration/conftest.py)."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(n, 10))
    logits[np.arange(n), rng.integers(0, 10, n)] += 4.0
    true = logits / 2.0
    true[np.arange(n), logits.argmax(1)] += 1.5
    cum = softmax(true, axis=1).cumsum(axis=1)
    labels = np.minimum((cum < rng.random(n)[:, None]).sum(axis=1), 9)
    probs = softmax(logits, axis=1)
    return probs.max(1), (probs.argmax(1) == labels).astype(float), rng.uniform(size=n)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def scipy_within_bin(c, z, r, n_resamples: int, seed: int, n_bins: int = 15, min_bin: int = 30):
    """The within-bin permutation test written with scipy.stats.permutation_test, bin by bin."""
    idx = bin_index(c, n_bins)
    counts = np.bincount(idx, minlength=n_bins)
    used = np.flatnonzero(counts >= min_bin)
    weights = counts[used] / counts[used].sum()
    rng = np.random.default_rng(seed)
    observed, null = 0.0, np.zeros(n_resamples)
    for k, w in zip(used, weights):
        members = idx == k
        e = z[members] - c[members]
        m = e.shape[0] // 3

        def gap(x, axis=-1, e=e, m=m):
            ee = e[np.argsort(x, axis=axis)]
            return np.abs(ee[..., -m:].mean(axis=-1) - ee[..., :m].mean(axis=-1))

        res = stats.permutation_test((r[members],), gap, permutation_type="pairings",
                                     vectorized=True, n_resamples=n_resamples,
                                     alternative="greater", rng=rng)
        observed += w * res.statistic
        null += w * res.null_distribution
    p = (1 + np.sum(null >= observed * (1 - 100 * np.finfo(float).eps))) / (n_resamples + 1)
    return observed, p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-perm-data", type=int, default=10_000)
    ap.add_argument("--n-perm", type=int, default=10_000)
    ap.add_argument("--scipy-perm", type=int, default=1_000)
    ap.add_argument("--n-cv", type=int, default=5_000)
    ap.add_argument("--n-statsmodels", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    c, z, r = synthetic(args.n_perm_data, seed=0)
    gaps = matched_gaps(c, z, r)
    print(f"permutation data: N={c.shape[0]} bins used={gaps.n_bins_used} N_used={gaps.n_used}")
    permutation_test(c, z, r, n_perm=200)  # warm-up
    ours = permutation_test(c, z, r, n_perm=args.n_perm, seed=0, method="within-bin")
    perm_s = median_time(lambda: permutation_test(c, z, r, n_perm=args.n_perm, seed=0,
                                                  method="within-bin"), args.repeats)
    robust = permutation_test(c, z, r, n_perm=args.n_perm, seed=0, method="residualised")
    robust_s = median_time(lambda: permutation_test(c, z, r, n_perm=args.n_perm, seed=0,
                                                    method="residualised"), args.repeats)
    t = time.perf_counter()
    sp_stat, sp_p = scipy_within_bin(c, z, r, args.scipy_perm, seed=0)
    scipy_s = (time.perf_counter() - t) * args.n_perm / args.scipy_perm
    print(f"arcal within-bin: T={ours.statistic:.6f} p={ours.pvalue:.4f} B={args.n_perm} "
          f"{perm_s:.3f}s")
    print(f"arcal residualised: T={robust.statistic:.6f} p={robust.pvalue:.4f} B={args.n_perm} "
          f"{robust_s:.3f}s")
    print(f"scipy: T={sp_stat:.6f} p={sp_p:.4f} B={args.scipy_perm}, "
          f"scaled to B={args.n_perm}: {scipy_s:.2f}s")

    c2, z2, _ = synthetic(args.n_cv, seed=1)
    x = np.column_stack([c2, np.random.default_rng(2).uniform(size=args.n_cv)])
    xs = (x - x.mean(0)) / x.std(0, ddof=1)
    curve = cv_nll_curve(xs, z2, k=5, seed=0)
    cv_s = median_time(lambda: cv_nll_curve(xs, z2, k=5, seed=0), args.repeats)
    print(f"arcal CV-NLL: N={args.n_cv}, 13 multipliers x 5 folds, {cv_s:.3f}s, "
          f"min CV-NLL {curve.min():.5f}")
    chunk_s = {}  # the predictions cv_nll_curve makes, with both chunk sizes
    for name, elems in (("default", {}), ("32mb", {"chunk_elems": 1 << 22})):
        chunk_s[name] = median_time(
            lambda: nw_kfold_grid(xs, z2, lambda n: scott_factor(n, 2), CV_MULTIPLIERS, k=5,
                                  seed=0, **elems),
            args.repeats,
        )
    print(f"CV predictions: default chunks {chunk_s['default']:.3f}s, 32 MB chunks "
          f"{chunk_s['32mb']:.3f}s")

    from statsmodels.nonparametric.kernel_regression import KernelReg

    n_sm = args.n_statsmodels
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kr = KernelReg(z2[:n_sm], x[:n_sm], var_type="cc", reg_type="lc", bw="cv_ls")
    sm_raw = time.perf_counter() - t
    sm_s = sm_raw * (args.n_cv / n_sm) ** 2
    print(f"statsmodels KernelReg cv_ls: N={n_sm} {sm_raw:.2f}s bw={np.round(kr.bw, 4)}, "
          f"scaled to N={args.n_cv}: {sm_s:.1f}s")
    print(f"perm_seconds={perm_s:.3f} perm_speedup_vs_scipy={scipy_s / perm_s:.1f} "
          f"robust_seconds={robust_s:.3f} robust_speedup_vs_scipy={scipy_s / robust_s:.1f} "
          f"cvnll_seconds={cv_s:.3f} nw_speedup_vs_statsmodels={sm_s / cv_s:.1f} "
          f"chunk_speedup_vs_32mb={chunk_s['32mb'] / chunk_s['default']:.2f}")


if __name__ == "__main__":
    main()
