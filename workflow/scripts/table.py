"""Snakemake entry point of rule `table`."""

from pathlib import Path

from arcal import logs
from arcal.report.tables import render_table

logs.setup(snakemake.log[0])
summary_dir = Path(snakemake.input.summaries[0]).parent
render_table(snakemake.wildcards.name, summary_dir, snakemake.output[0],
             Path(snakemake.input.template).parent)
