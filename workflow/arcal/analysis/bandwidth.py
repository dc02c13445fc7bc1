"""Bandwidth sensitivity of one cell's Nadaraya-Watson probes: Scott multiples, the CV-NLL
curve and its choice, and the global-ECE oracle (DESIGN section 2). Rows: probe, rule,
multiplier, metric, value."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
import yaml

from arcal import calibration as cal
from arcal.analysis.probes import cv_grid
from arcal.io import atomic_write_csv, load_dump

COLUMNS = ["probe", "rule", "multiplier", "metric", "value"]


def sweep_rows(
    calib: cal.ProbeInputs, test: cal.ProbeInputs, settings: dict[str, Any], seed: int = 0
) -> pd.DataFrame:
    rows = []
    for probe in settings["sweep_probes"]:
        rows += cal.bandwidth_sweep(
            calib, test, probe, tuple(settings["scott_multipliers"]), cv_grid(settings),
            settings["cv_folds"], seed,
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m arcal.analysis.bandwidth", description=__doc__)
    ap.add_argument("calib", help="calib.npz of a cell")
    ap.add_argument("test", help="test.npz of the same cell")
    ap.add_argument("--settings", required=True, help="YAML with the config's calibration block")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    with open(args.settings) as f:
        settings = yaml.safe_load(f)
    calib = cal.ProbeInputs.from_dump(load_dump(args.calib))
    test = cal.ProbeInputs.from_dump(load_dump(args.test))
    atomic_write_csv(args.out, sweep_rows(calib, test, settings, args.seed))


if __name__ == "__main__":
    main()
