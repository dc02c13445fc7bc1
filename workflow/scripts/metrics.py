"""Snakemake entry point of rule `metrics`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal.analysis.metrics import model_metrics
from arcal.io import atomic_write_csv, load_dump

table = model_metrics(load_dump(snakemake.input.test), snakemake.params.n_bins)
atomic_write_csv(snakemake.output[0], table)
