"""Snakemake entry point of rule `bandwidth`."""

from arcal import logs
from arcal.analysis.bandwidth import sweep_rows
from arcal.calibration import ProbeInputs
from arcal.io import atomic_write_csv, load_dump

logs.setup(snakemake.log[0])
calib = ProbeInputs.from_dump(load_dump(snakemake.input.calib))
test = ProbeInputs.from_dump(load_dump(snakemake.input.test))
table = sweep_rows(calib, test, snakemake.params.settings, int(snakemake.wildcards.seed))
atomic_write_csv(snakemake.output[0], table)
