"""Snakemake entry point of rule `probes`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal.analysis.probes import probe_rows
from arcal.calibration import ProbeInputs
from arcal.io import atomic_write_csv, load_dump

calib = ProbeInputs.from_dump(load_dump(snakemake.input.calib))
test = ProbeInputs.from_dump(load_dump(snakemake.input.test))
table = probe_rows(calib, test, snakemake.params.settings, int(snakemake.wildcards.seed))
atomic_write_csv(snakemake.output[0], table)
