"""Bandwidth sensitivity of one cell's Nadaraya-Watson probes: Scott multiples, the CV-NLL
curve and its choice, and the global-ECE oracle (docs/methods.md). Rows: probe, rule,
multiplier, metric, value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from arcal import calibration as cal
from arcal.analysis.probes import cv_grid
from arcal.analysis.cli import parse_cell_args
from arcal.io import atomic_write_csv

COLUMNS = ["probe", "rule", "multiplier", "metric", "value"]


def sweep_rows(
    calib: cal.ProbeInputs, test: cal.ProbeInputs, settings: dict[str, Any], seed: int = 0,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every sweep probe's rows; tertile ECEs by r_agg and depth_var, or by `features`."""
    rows = []
    for probe in settings["sweep_probes"]:
        rows += cal.bandwidth_sweep(
            calib, test, probe, tuple(settings["scott_multipliers"]), cv_grid(settings),
            settings["cv_folds"], seed, settings["n_bins"], features=features,
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: list[str] | None = None) -> None:
    args, (calib, test), settings = parse_cell_args(
        "python -m arcal.analysis.bandwidth", __doc__, ("calib", "test"), argv
    )
    atomic_write_csv(args.out, sweep_rows(calib, test, settings["calibration"], args.seed))

if __name__ == "__main__":
    main()
