"""Why the residualised test: size and power of the candidate confound-robust within-bin tests
(a script, not a test; docs/methods.md, "How it was chosen").

Candidates, all with the weighted matched gap as statistic:

* ``paper``: residual z - c, permutation within the 15 confidence bins (the paper's test);
* ``residualised``: residual z - m(c), m cross-fitted (arcal's default);
* ``strata``: residual z - c, permutation only within groups of ``--group`` consecutive
  confidences inside each bin (a conditional permutation: the null keeps how the feature moves
  with c);
* ``residualised+strata``: both.

``paper`` and ``residualised`` are ``arcal.calibration.permutation_test``; the strata variants
are written here with a plain (slower) permutation, since arcal does not ship them. Data come
from ``arcal.calibration.simulation`` (N = 5000). Null cells: 4 miscalibration shapes x 4
features; power cells: within-bin effects 0.05 and 0.10 with an independent feature and one
that tracks c closely. Prints a table and, last,
``size_max_paper=.. size_max_residualised=.. size_max_strata=.. size_max_residualised+strata=..``.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from arcal.calibration import bin_index, cross_fitted_map, permutation_test
from arcal.calibration.gaps import third_contrast_weights
from arcal.calibration.simulation import simulate

CANDIDATES = ("paper", "residualised", "strata", "residualised+strata")
NULL_SHAPES = ("gamma1", "gamma3", "overconfident", "underconfident")
FEATURES = ("independent", "low", "medium", "high")


def strata_test(c, z, r, reference, n_perm, group, rng, n_bins=15, min_bin=30) -> float:
    """p-value of the weighted gap of e = z - reference with r permuted only within groups of
    ``group`` consecutive confidences inside each bin. Permuting r among a group's members is
    permuting e over the members' fixed third weights, so each permutation is one gather."""
    w = third_contrast_weights(c, r, n_bins, min_bin)  # (n_k / N_used)(top - bottom) / m_k
    idx = bin_index(c, n_bins)
    order = np.lexsort((c, idx))
    groups = np.empty(c.size, dtype=np.int64)
    start = 0
    for k in np.unique(idx):
        members = order[idx[order] == k]
        groups[members] = start + np.arange(members.size) // group
        start = groups[members].max() + 1
    e = z - reference
    observed = np.abs(np.bincount(idx, weights=w * e, minlength=n_bins)).sum()
    base = np.argsort(groups, kind="stable")
    keys = rng.random((n_perm, c.size)) + groups[None, :]  # sorts by group, randomly inside
    permuted = np.empty((n_perm, c.size))
    permuted[:, base] = e[np.argsort(keys, axis=1)]
    per_bin = np.zeros((n_perm, n_bins))
    for k in np.flatnonzero(np.bincount(idx, weights=np.abs(w), minlength=n_bins)):
        members = idx == k
        per_bin[:, k] = permuted[:, members] @ w[members]
    null = np.abs(per_bin).sum(axis=1)
    return (1 + np.sum(null >= observed - 1e-12)) / (n_perm + 1)


def run_cell(job):
    shape, feature, effect, n_sets, n, n_perm, group = job
    rng = np.random.default_rng([NULL_SHAPES.index(shape), FEATURES.index(feature),
                                 int(effect * 1000)])
    hits = dict.fromkeys(CANDIDATES, 0)
    for i in range(n_sets):
        d = simulate(n, shape, feature, rng, effect)
        for method, name in (("within-bin", "paper"), ("residualised", "residualised")):
            hits[name] += permutation_test(d.conf, d.correct, d.feature, n_perm=n_perm, seed=i,
                                           method=method).pvalue <= 0.05
        m = cross_fitted_map(d.conf, d.correct, 5, i)
        for name, ref in (("strata", d.conf), ("residualised+strata", m)):
            hits[name] += strata_test(d.conf, d.correct, d.feature, ref, n_perm, group,
                                      rng) <= 0.05
    return shape, feature, effect, {k: v / n_sets for k, v in hits.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", type=int, default=300, help="datasets per cell")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--n-perm", type=int, default=199)
    ap.add_argument("--group", type=int, default=10, help="strata size of the conditional test")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    cells = [(s, f, 0.0) for s in NULL_SHAPES for f in FEATURES]
    cells += [(s, f, e) for e in (0.05, 0.10) for s in ("gamma1", "gamma3")
              for f in ("independent", "high")]
    jobs = [(s, f, e, args.sets, args.n, args.n_perm, args.group) for s, f, e in cells]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_cell, jobs))
    print(f"{'shape':<15} {'feature':<12} {'effect':>6} " + " ".join(f"{c:>20}" for c in CANDIDATES))
    size = dict.fromkeys(CANDIDATES, 0.0)
    for shape, feature, effect, rates in results:
        print(f"{shape:<15} {feature:<12} {effect:>6.2f} "
              + " ".join(f"{rates[c]:>20.3f}" for c in CANDIDATES))
        if effect == 0:
            size = {c: max(size[c], rates[c]) for c in CANDIDATES}
    print(" ".join(f"size_max_{c}={size[c]:.3f}" for c in CANDIDATES))


if __name__ == "__main__":
    main()
