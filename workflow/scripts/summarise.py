"""Snakemake entry point of rule `summarise`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal.report.aggregate import Options, write_summary

write_summary(
    snakemake.wildcards.summary,
    "results",
    snakemake.params.cells,
    snakemake.output[0],
    Options(snakemake.params.alpha, snakemake.params.n_bins),
)
