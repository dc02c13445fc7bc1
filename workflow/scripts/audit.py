"""Snakemake entry point of rule `audit`."""

from arcal import logs

logs.setup_rule(snakemake)  # first: failed imports land in the rule log too

from pathlib import Path

from arcal.audit.cli import audit

spec = snakemake.params.spec
audit(
    out=Path(snakemake.output.report).parent,
    input=getattr(snakemake.input, "input", None),
    calib=getattr(snakemake.input, "calib", None),
    test=getattr(snakemake.input, "test", None),
    settings={"calibration": snakemake.params.calibration, "planted": snakemake.params.planted},
    seed=spec.get("seed"),
    features=spec.get("features"),
    matrices=spec.get("matrices"),
    planted_feature=spec.get("planted_feature"),
)
