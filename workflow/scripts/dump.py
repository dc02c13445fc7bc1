"""Snakemake entry point of rule `dump`."""

from pathlib import Path

from arcal import logs
from arcal.dump import dump

logs.setup(snakemake.log[0])
s = snakemake.params.settings
dump(
    snakemake.input.model,
    snakemake.input.splits,
    Path(snakemake.output.test).parent,
    device=s["device"],
    threads=snakemake.threads,
)
