"""Probe-free metrics of a model on its test split: accuracy, ECE, MCE, classwise ECE,
SmoothECE, NLL and Brier (docs/methods.md). Baseline models included."""

from __future__ import annotations

import argparse

import pandas as pd

from arcal import calibration as cal
from arcal.io import Dump, atomic_write_csv, load_dump


def model_metrics(dump: Dump, n_bins: int = 15) -> pd.DataFrame:
    """One row per metric (columns metric, value) of the raw softmax of `dump`."""
    probs = cal.softmax(dump.logits.astype("float64"))
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == dump.labels).astype("float64")
    values = {
        "accuracy": float(correct.mean()),
        "ece": cal.ece(conf, correct, n_bins),
        "mce": cal.mce(conf, correct, n_bins),
        "classwise_ece": cal.classwise_ece(probs, dump.labels, n_bins),
        "smooth_ece": cal.smooth_ece(conf, correct),
        "nll": cal.nll_logits(dump.logits, dump.labels),
        "brier": cal.brier(probs, dump.labels),
    }
    return pd.DataFrame({"metric": list(values), "value": list(values.values())})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m arcal.analysis.metrics", description=__doc__)
    ap.add_argument("dump", help="test.npz of a cell")
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--n-bins", type=int, default=15)
    args = ap.parse_args(argv)
    atomic_write_csv(args.out, model_metrics(load_dump(args.dump), args.n_bins))


if __name__ == "__main__":
    main()
