"""Calibration probes of one cell: each probe is fitted on the calibration split and scored on
the test split (docs/methods.md, "Probes"). Rows: probe, bandwidth_rule, multiplier, metric,
value, n_params. Nadaraya-Watson probes use the configured bandwidth rule; the others have
bandwidth_rule "none"."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from arcal import calibration as cal
from arcal.analysis.cli import parse_cell_args
from arcal.io import atomic_write_csv

log = logging.getLogger(__name__)

COLUMNS = ["probe", "bandwidth_rule", "multiplier", "metric", "value", "n_params"]


def cv_grid(settings: dict[str, Any]) -> tuple[float, ...]:
    """The log grid of bandwidth multipliers searched by CV-NLL (and by the oracle)."""
    g = settings["cv_multipliers"]
    return tuple(float(m) for m in np.geomspace(g["min"], g["max"], g["n"]))


def probe_options(name: str, settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """Keyword arguments of `make_probe` for `name` under the calibration settings."""
    if cal.is_nw_probe(name):
        return {"rule": settings["nw_rule"], "grid": cv_grid(settings),
                "n_folds": settings["cv_folds"], "seed": seed, "n_bins": settings["n_bins"]}
    if name.startswith("mlp-"):
        return {"seed": seed}
    return {}


def probe_rows(
    calib: cal.ProbeInputs, test: cal.ProbeInputs, settings: dict[str, Any], seed: int = 0,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Fit every configured probe on `calib`, score it on `test`; tidy rows in COLUMNS.

    Tertile ECEs are by the routing features depth_var and r_agg, which the split must have;
    `features` (names the splits carry, e.g. an audited model's traces) replaces them."""
    if features is None and (test.depth_var is None or test.r_agg is None):
        raise ValueError("probes need a routing trace; this dump has none (a baseline model?)")
    rows = []
    for name in settings["probes"]:
        probe = cal.make_probe(name, **probe_options(name, settings, seed)).fit(calib)
        conf_hat = probe.predict(test)
        if features is None:
            scores = cal.score_confidence(
                conf_hat, test.correct, test.r_agg, test.depth_var, settings["n_bins"]
            )
        else:
            scores = cal.score_confidence(conf_hat, test.correct, n_bins=settings["n_bins"],
                                          features={f: test.feature(f) for f in features})
        rule = getattr(probe, "rule", "none")
        multiplier = getattr(probe, "multiplier_", float("nan"))
        log.info("%s: ECE %.4f (n_params %d)", name, scores["ece"], probe.n_params)
        rows += [(name, rule, multiplier, m, v, probe.n_params) for m, v in scores.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def main(argv: list[str] | None = None) -> None:
    args, (calib, test), settings = parse_cell_args(
        "python -m arcal.analysis.probes", __doc__, ("calib", "test"), argv
    )
    atomic_write_csv(args.out, probe_rows(calib, test, settings["calibration"], args.seed))

if __name__ == "__main__":
    main()
