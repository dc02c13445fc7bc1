"""Snakemake entry point of rule `attention`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.audit.attention import attention_audit

attention_audit(
    snakemake.input.calib,
    snakemake.input.test,
    {"calibration": snakemake.params.calibration, "planted": snakemake.params.planted},
    int(snakemake.wildcards.seed),
    Path(snakemake.output.probes).parent,
)
