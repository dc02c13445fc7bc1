"""Matched-confidence gaps and the within-bin permutation test of one cell, one test per
routing feature (DESIGN section 2). Writes the table (feature, n_bins_used, max_gap,
weighted_gap, p_value, n_perm, reject) and the null distributions (`<feature>` and
`observed_<feature>` arrays in an .npz) for the figures."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from arcal import calibration as cal
from arcal.analysis.cli import parse_cell_args
from arcal.io import atomic_save_npz, atomic_write_csv

log = logging.getLogger(__name__)

COLUMNS = ["feature", "n_bins_used", "max_gap", "weighted_gap", "p_value", "n_perm", "reject"]


def feature_tests(
    test: cal.ProbeInputs, settings: dict[str, Any], seed: int = 0
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Run the test for every configured feature; the table and the null arrays.

    Feature i of the list uses seed `seed * 1000 + i`, so tests of one cell are independent
    and every run is reproducible.
    """
    rows, nulls = [], {}
    for i, feature in enumerate(settings["features"]):
        values = test.feature(feature)
        res = cal.permutation_test(
            test.conf, test.correct, values, settings["n_bins"], settings["min_bin"],
            settings["n_perm"], seed=seed * 1000 + i,
        )
        reject = bool(res.pvalue <= settings["alpha"]) if np.isfinite(res.pvalue) else False
        log.info("%s: weighted gap %.4f, p = %.4f", feature, res.statistic, res.pvalue)
        rows.append((feature, res.n_bins_used, res.max_gap, res.weighted_gap, res.pvalue,
                     res.n_perm, reject))
        nulls[feature] = res.null
        nulls[f"observed_{feature}"] = np.asarray(res.statistic)
    return pd.DataFrame(rows, columns=COLUMNS), nulls


def main(argv: list[str] | None = None) -> None:
    args, (test,), settings = parse_cell_args(
        "python -m arcal.analysis.permutation", __doc__, ("test",), argv,
        extra=(("--null-out", ".npz of null distributions to write"),),
    )
    table, nulls = feature_tests(test, settings, args.seed)
    atomic_write_csv(args.out, table)
    atomic_save_npz(args.null_out, **nulls)

if __name__ == "__main__":
    main()
