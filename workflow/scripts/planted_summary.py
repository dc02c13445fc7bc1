"""Snakemake entry point of rule `planted_summary`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

import pandas as pd

from arcal.analysis.planted import summarise
from arcal.io import atomic_write_csv

frames = {cell: pd.read_csv(path) for cell, path in zip(snakemake.params.cells, snakemake.input)}
atomic_write_csv(snakemake.output[0], summarise(frames))
