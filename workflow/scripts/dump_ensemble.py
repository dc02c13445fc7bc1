"""Snakemake entry point of rule `dump_ensemble`."""

from pathlib import Path

from arcal import logs
from arcal.dump import dump_ensemble

logs.setup(snakemake.log[0])
s = snakemake.params.settings
dump_ensemble(
    snakemake.input.model,
    snakemake.input.splits,
    Path(snakemake.output.test).parent,
    snakemake.params.k,
    device=s["device"],
    threads=snakemake.threads,
)
