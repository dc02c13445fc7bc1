"""Snakemake entry point of rule `dump_ensemble`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.dump import dump_ensemble

s = snakemake.params.settings
dump_ensemble(
    snakemake.input.model,
    snakemake.input.splits,
    Path(snakemake.output.test).parent,
    snakemake.params.k,
    device=s["device"],
    threads=snakemake.threads,
)
