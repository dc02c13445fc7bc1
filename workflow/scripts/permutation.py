"""Snakemake entry point of rule `permutation`."""

from arcal import logs
from arcal.analysis.permutation import feature_tests
from arcal.calibration import ProbeInputs
from arcal.io import atomic_save_npz, atomic_write_csv, load_dump

logs.setup(snakemake.log[0])
test = ProbeInputs.from_dump(load_dump(snakemake.input.test))
table, nulls = feature_tests(test, snakemake.params.settings, int(snakemake.wildcards.seed))
atomic_save_npz(snakemake.output.null, **nulls)
atomic_write_csv(snakemake.output.table, table)
