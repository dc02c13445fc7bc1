"""Snakemake entry point of rule `permutation`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from arcal.analysis.permutation import feature_tests
from arcal.calibration import ProbeInputs
from arcal.io import atomic_save_npz, atomic_write_csv, load_dump

test = ProbeInputs.from_dump(load_dump(snakemake.input.test))
table, nulls = feature_tests(test, snakemake.params.settings, int(snakemake.wildcards.seed))
atomic_save_npz(snakemake.output.null, **nulls)
atomic_write_csv(snakemake.output.table, table)
