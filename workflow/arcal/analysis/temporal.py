"""The temporal pilot: does an ensemble of the last K training snapshots change calibration,
or what the routing trace says about it? Compares each temporal cell's final model with its
snapshot ensemble (probabilities averaged over snapshots, routing summaries averaged)."""

from __future__ import annotations

import pandas as pd

COLUMNS = ["dataset", "substrate", "variant", "seed", "model", "quantity", "value"]
#: The within-bin test whose p-values the temporal table reports.
TEMPORAL_TEST = "residualised"


def temporal_rows(
    cell: str,
    final_metrics: pd.DataFrame,
    ensemble_metrics: pd.DataFrame,
    ensemble_permutation: pd.DataFrame | None,
) -> pd.DataFrame:
    """Tidy rows for one cell: every metric of the final model and of the ensemble, and the
    ensemble's permutation p-value per routing feature (quantity `p_<feature>`) from the
    default (residualised) test; NaN where that test could not run."""
    dataset, substrate, variant, seed = cell.split("/")
    keys = (dataset, substrate, variant, int(seed.removeprefix("seed")))
    rows = [(*keys, model, m, v)
            for model, table in (("final", final_metrics), ("ensemble", ensemble_metrics))
            for m, v in zip(table["metric"], table["value"])]
    if ensemble_permutation is not None:
        default = ensemble_permutation[ensemble_permutation["method"] == TEMPORAL_TEST]
        rows += [(*keys, "ensemble", f"p_{f}", p)
                 for f, p in zip(default["feature"], default["p_value"])]
    return pd.DataFrame(rows, columns=COLUMNS)
