"""Snakemake entry point of rules `dump` and `dump_with_ensemble` (the temporal pilot's cells)."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.dump import dump

s = snakemake.params.settings
dump(
    snakemake.input.model,
    snakemake.input.splits,
    Path(snakemake.output.test).parent,
    ensemble_k=snakemake.params.ensemble_k,
    device=s["device"],
    threads=snakemake.threads,
)
