"""Matched-confidence gaps and within-bin permutation tests of one cell: one test per routing
feature and test method (docs/methods.md, "Permutation tests"). Writes the table (feature,
method, ran, n_bins_used, max_gap, weighted_gap, p_value, p_value_max, n_perm, reject) and the
null distributions (arrays `<method>/<feature>`, `<method>/<feature>/max` and
`<method>/observed_<feature>` in an .npz) for the figures.

A test that cannot run (no confidence bin holds `min_bin` examples) is written with `ran`
False, NaN statistics and an empty `reject`, and logged as a warning: it is not a
non-rejection."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from arcal import calibration as cal
from arcal.analysis.cli import parse_cell_args
from arcal.io import atomic_save_npz, atomic_write_csv

log = logging.getLogger(__name__)

COLUMNS = ["feature", "method", "ran", "n_bins_used", "max_gap", "weighted_gap", "p_value",
           "p_value_max", "n_perm", "reject"]


def feature_tests(
    test: cal.ProbeInputs, settings: dict[str, Any], seed: int = 0
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run every configured test method for every configured feature; the table and the nulls.

    Feature i of the list uses seed `seed * 1000 + i` for every method, so tests of one cell are
    independent across features, the methods see the same permutations, and every run is
    reproducible.
    """
    rows, nulls = [], {}
    n_bins, min_bin = settings["n_bins"], settings["min_bin"]
    for i, feature in enumerate(settings["features"]):
        values = test.feature(feature)
        for method in settings["test_methods"]:
            res = cal.permutation_test(test.conf, test.correct, values, n_bins, min_bin,
                                       settings["n_perm"], seed=seed * 1000 + i, method=method)
            if res.ran:
                reject = bool(res.pvalue <= settings["alpha"])
                log.info("%s (%s): weighted gap %.4f, p = %.4f; max gap %.4f, p = %.4f", feature,
                         method, res.statistic, res.pvalue, res.max_gap, res.pvalue_max)
            else:
                reject = pd.NA
                largest = int(np.bincount(cal.bin_index(test.conf, n_bins)).max())
                log.warning(
                    "%s (%s): test NOT RUN: no confidence bin holds min_bin=%d examples (largest "
                    "bin: %d of %d); lower calibration.min_bin or n_bins, or enlarge the test "
                    "split", feature, method, min_bin, largest, test.n)
            rows.append((feature, method, res.ran, res.n_bins_used, res.max_gap, res.weighted_gap,
                         res.pvalue, res.pvalue_max, res.n_perm, reject))
            nulls[f"{method}/{feature}"] = res.null
            nulls[f"{method}/{feature}/max"] = res.null_max
            nulls[f"{method}/observed_{feature}"] = np.asarray(res.statistic)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["reject"] = table["reject"].astype("boolean")
    return table, nulls


def main(argv: list[str] | None = None) -> None:
    args, (test,), settings = parse_cell_args(
        "python -m arcal.analysis.permutation", __doc__, ("test",), argv,
        extra=(("--null-out", ".npz of null distributions to write"),),
    )
    table, nulls = feature_tests(test, settings["calibration"], args.seed)
    atomic_write_csv(args.out, table)
    atomic_save_npz(args.null_out, **nulls)

if __name__ == "__main__":
    main()
