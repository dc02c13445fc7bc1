"""Bandwidth sweep for the workflow's bandwidth stage (docs/methods.md, "Bandwidth rules").

For one Nadaraya-Watson probe, fit on the calibration split and score on the test split at every
bandwidth the study looks at, returning tidy rows (probe, rule, multiplier, metric, value):

* rule ``scott``: each multiplier of ``SCOTT_MULTIPLIERS``, all scores;
* rule ``cv-nll-curve``: metric ``cv_nll`` (5-fold CV-NLL on the calibration split) at each
  multiplier of the grid;
* rule ``cv-nll``: the multiplier the CV-NLL curve selects, all scores;
* rule ``grid``: each multiplier of the grid, all test scores (the curve the oracle minimises);
* rule ``oracle``: the grid multiplier with the smallest test ECE, all scores (an oracle).

Test predictions for all multipliers come from one pass over the distances.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bandwidth import CV_MULTIPLIERS, SCOTT_MULTIPLIERS, cv_nll_curve
from .inputs import ProbeInputs
from .registry import NW_FEATURES, is_nw_probe, make_probe
from .scoring import score_confidence


def bandwidth_sweep(
    calib: ProbeInputs,
    test: ProbeInputs,
    probe: str,
    scott_multipliers: tuple[float, ...] = SCOTT_MULTIPLIERS,
    grid: tuple[float, ...] = CV_MULTIPLIERS,
    n_folds: int = 5,
    seed: int = 0,
    n_bins: int = 15,
    features: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """Rows (probe, rule, multiplier, metric, value) for NW probe ``probe`` (module docstring);
    binned scores and the oracle's ECE use ``n_bins`` bins. Tertile ECEs are by r_agg and
    depth_var where the test split has them, or by the named ``features`` when given."""
    if not is_nw_probe(probe):
        raise ValueError(f"probe: {probe!r} is not a Nadaraya-Watson probe; use one of "
                         f"{tuple(NW_FEATURES)} or nw-<feature>")
    nw = make_probe(probe, rule="scott", multiplier=1.0).fit(calib)
    mults = tuple(dict.fromkeys((*scott_multipliers, *grid)))
    preds = dict(zip(mults, nw.predict_grid(test, mults)))
    if features is None:
        tertiles = {"r_agg": test.r_agg, "depth_var": test.depth_var}
    else:
        tertiles = {"features": {f: test.feature(f) for f in features}}
    scores = {m: score_confidence(p, test.correct, n_bins=n_bins, **tertiles)
              for m, p in preds.items()}
    curve = cv_nll_curve(nw.x_, nw.z_, grid, k=n_folds, seed=seed)
    m_cv = grid[int(np.argmin(curve))]
    m_oracle = min(grid, key=lambda m: scores[m]["ece"])
    rows: list[dict[str, object]] = []

    def add(rule: str, m: float, metrics: dict[str, float]) -> None:
        rows.extend({"probe": probe, "rule": rule, "multiplier": float(m), "metric": k,
                     "value": float(v)} for k, v in metrics.items())

    for m in scott_multipliers:
        add("scott", m, scores[m])
    for m, v in zip(grid, curve):
        add("cv-nll-curve", m, {"cv_nll": v})
    add("cv-nll", m_cv, scores[m_cv])
    for m in grid:
        add("grid", m, scores[m])
    add("oracle", m_oracle, scores[m_oracle])
    return rows
