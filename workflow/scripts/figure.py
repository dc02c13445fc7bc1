"""Snakemake entry point of rule `figure`."""

from pathlib import Path

from arcal import logs
from arcal.report.figures import render_figure

logs.setup(snakemake.log[0])
render_figure(snakemake.wildcards.name, Path(snakemake.input.summaries[0]).parent, snakemake.output[0])
