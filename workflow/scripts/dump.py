"""Snakemake entry point of rule `dump`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.dump import dump

s = snakemake.params.settings
dump(
    snakemake.input.model,
    snakemake.input.splits,
    Path(snakemake.output.test).parent,
    device=s["device"],
    threads=snakemake.threads,
)
