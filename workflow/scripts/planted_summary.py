"""Snakemake entry point of rule `planted_summary`."""

import pandas as pd

from arcal import logs
from arcal.analysis.planted import summarise
from arcal.io import atomic_write_csv

logs.setup(snakemake.log[0])
frames = {cell: pd.read_csv(path) for cell, path in zip(snakemake.params.cells, snakemake.input)}
atomic_write_csv(snakemake.output[0], summarise(frames))
