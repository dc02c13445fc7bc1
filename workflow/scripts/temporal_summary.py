"""Snakemake entry point of rule `temporal_summary`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

import pandas as pd

from arcal.analysis.temporal import COLUMNS, temporal_rows
from arcal.io import atomic_write_csv

permutation = dict(zip(snakemake.params.routed, snakemake.input.permutation))
frames = [
    temporal_rows(
        cell,
        pd.read_csv(final),
        pd.read_csv(ensemble),
        pd.read_csv(permutation[cell]) if cell in permutation else None,
    )
    for cell, final, ensemble in zip(
        snakemake.params.cells, snakemake.input.final, snakemake.input.ensemble
    )
]
table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
atomic_write_csv(snakemake.output[0], table)
