"""Snakemake entry point of rule `attention_summary`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal.audit.attention import write_summaries

write_summaries(
    snakemake.params.cells,
    {
        "attention_permutation.csv": list(snakemake.input.permutation),
        "attention_probes.csv": list(snakemake.input.probes),
    },
    {
        "attention_permutation.csv": snakemake.output.permutation,
        "attention_probes.csv": snakemake.output.probes,
    },
)
