"""Snakemake entry point of rule `planted`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal.analysis.planted import planted_rows
from arcal.calibration import ProbeInputs
from arcal.io import atomic_write_csv, load_dump

calib = ProbeInputs.from_dump(load_dump(snakemake.input.calib))
test = ProbeInputs.from_dump(load_dump(snakemake.input.test))
seed = int(snakemake.wildcards.seed)
table = planted_rows(calib, test, snakemake.params.settings, snakemake.params.calibration, seed)
atomic_write_csv(snakemake.output[0], table)
