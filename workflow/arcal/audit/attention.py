"""The baselines' attention audit: does the attention entropy of a standard-residual model say
anything about calibration beyond confidence?

Every dump records per-layer attention entropies (``A``, and their mean ``attn_entropy``:
:mod:`arcal.models.attention`). For each baseline cell the workflow runs two stages of the audit
on them (:func:`attention_audit`): both permutation tests of ``attn_entropy`` and the probes,
with ``nw-attn_entropy`` against ``nw-conf`` and the capacity audit on ``A``
(``mlp-full@A``, ``mlp-conf@A``, ``mlp-shuffled@A``). :func:`write_summaries` gathers the cells
into ``attention_permutation.csv`` and ``attention_probes.csv`` (the per-cell columns with the
cell keys in front), which the paper's attention table reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from arcal.audit.inputs import load_audit
from arcal.audit.run import run_audit
from arcal.io import atomic_write_text

FEATURE = "attn_entropy"
MATRIX = "A"
STAGES = ("permutation", "probes")
#: Summary files (results/summary/) and the per-cell file each gathers.
SUMMARIES = {"attention_permutation.csv": "permutation.csv", "attention_probes.csv": "probes.csv"}


def attention_audit(calib: str | Path, test: str | Path, settings: dict[str, Any], seed: int,
                    out_dir: str | Path) -> dict[str, Any]:
    """Permutation tests and probes of a cell's attention entropy (module docstring) into
    ``out_dir`` (permutation.csv, permutation.null.npz, probes.csv, inputs.json)."""
    c = settings["calibration"]
    data = load_audit(calib=calib, test=test, features=[FEATURE], matrices=[MATRIX],
                      n_bins=c["n_bins"], min_bin=c["min_bin"])
    return run_audit(data, settings, seed, out_dir, STAGES)


def write_summaries(cells: Sequence[str], inputs: dict[str, Sequence[str]],
                    out: dict[str, str | Path]) -> None:
    """For each summary of SUMMARIES: the per-cell CSVs ``inputs[name]`` (one per cell, in the
    order of ``cells``) with the cell keys in front, sorted by them, written to ``out[name]``."""
    from arcal.report.aggregate import CELL_KEYS, INPUT_COLUMNS, parse_cell

    for name, per_cell in SUMMARIES.items():
        kind = per_cell.removesuffix(".csv")
        columns = INPUT_COLUMNS[kind]
        frames = []
        for cell, path in zip(cells, inputs[name], strict=True):
            df = pd.read_csv(path)
            missing = [c for c in columns if c not in df.columns]
            if missing:
                raise ValueError(f"{path} lacks columns {missing}; expected {columns}")
            keys = parse_cell(cell)
            frames.append(df[columns].assign(**keys)[[*CELL_KEYS, *columns]])
        table = (pd.concat(frames, ignore_index=True) if frames
                 else pd.DataFrame(columns=[*CELL_KEYS, *columns]))
        table = table.sort_values(CELL_KEYS, kind="stable").reset_index(drop=True)
        atomic_write_text(out[name], table.to_csv(index=False, lineterminator="\n"))
