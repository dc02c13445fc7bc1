"""Snakemake entry point of rule `summarise`."""

from arcal import logs
from arcal.report.aggregate import write_summary

logs.setup(snakemake.log[0])
write_summary(
    snakemake.wildcards.summary,
    "results",
    snakemake.params.cells,
    snakemake.output[0],
    snakemake.params.alpha,
)
