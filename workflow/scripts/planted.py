"""Snakemake entry point of rule `planted`."""

from arcal import logs
from arcal.analysis.planted import planted_rows
from arcal.calibration import ProbeInputs
from arcal.io import atomic_write_csv, load_dump

logs.setup(snakemake.log[0])
calib = ProbeInputs.from_dump(load_dump(snakemake.input.calib))
test = ProbeInputs.from_dump(load_dump(snakemake.input.test))
seed = int(snakemake.wildcards.seed)
table = planted_rows(calib, test, snakemake.params.settings, snakemake.params.calibration, seed)
atomic_write_csv(snakemake.output[0], table)
