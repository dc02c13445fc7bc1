"""Snakemake entry point of rule `figure`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.report.figures import render_figure

render_figure(snakemake.wildcards.name, Path(snakemake.input.summaries[0]).parent, snakemake.output[0])
