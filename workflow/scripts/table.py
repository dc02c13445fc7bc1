"""Snakemake entry point of rule `table`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.report.tables import render_table

summary_dir = Path(snakemake.input.summaries[0]).parent
render_table(snakemake.wildcards.name, summary_dir, snakemake.output[0],
             Path(snakemake.input.template).parent)
