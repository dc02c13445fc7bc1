"""Audit a model's outputs and traces with arcal's diagnostic suite, without Snakemake.

    python -m arcal.audit INPUT --out DIR
    python -m arcal.audit --calib CALIB --test TEST --out DIR

INPUT, CALIB and TEST are npz or csv files in the audit format (README, "Auditing any model"),
or arcal dumps (results/dumps/<cell>/{calib,test}.npz). The stages are the workflow's: metrics,
permutation tests, probes (with the capacity audit when per-layer matrices are given), bandwidth
sweep and planted control. DIR receives their CSVs (the workflow's columns), inputs.json,
report.html and, when latexmk is on PATH, report.pdf.

Settings come in the config's shape: the calibration: and planted: blocks of config.yaml (the
repository's, found beside the package), with a --settings YAML merged over them. The seed is
--seed, else an arcal dump's own (its cell's, so the numbers equal the workflow's), else 0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("arcal.audit")

#: config.yaml of the repository this package sits in (workflow/arcal/audit -> repository root).
REPO_CONFIG = Path(__file__).resolve().parents[3] / "config.yaml"
#: The config's schema: the settings blocks are checked against it, so a typo is an error.
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
BLOCKS = ("calibration", "planted")


def check_blocks(settings: dict[str, Any], schema: Path = SCHEMA) -> None:
    """Validate the settings blocks against their part of the config schema (ValueError naming
    the key). Skipped only where the schema is absent (arcal installed without its workflow)."""
    if not schema.is_file():
        log.warning("settings: %s not found; the settings are not checked", schema)
        return
    import jsonschema

    full = yaml.safe_load(schema.read_text())
    part = {"$defs": full.get("$defs", {}), "type": "object",
            "properties": {b: full["properties"][b] for b in BLOCKS}}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(part).iter_errors(settings))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "settings"
        raise ValueError(f"settings: {where}: {error.message}")


def load_settings(path: str | Path | None = None, base: Path = REPO_CONFIG) -> dict[str, Any]:
    """The ``calibration`` and ``planted`` blocks: config.yaml's, with ``path`` merged over them
    (a file in the config's shape; config.yaml itself works). Without config.yaml, ``path`` must
    hold both blocks in full."""
    from arcal.grid import deep_merge

    merged: dict[str, Any] = {}
    if base.is_file():
        merged = yaml.safe_load(base.read_text()) or {}
    elif path is None:
        raise ValueError(f"settings: no config.yaml at {base} (arcal is not run from its "
                         "repository); pass --settings YAML with the calibration: and planted: "
                         "blocks")
    if path is not None:
        with open(path) as f:
            user = yaml.safe_load(f) or {}
        if not isinstance(user, dict) or not any(isinstance(user.get(b), dict) for b in BLOCKS):
            raise ValueError(f"--settings {path}: holds neither a calibration: nor a planted: "
                             "block; it is read like config.yaml")
        merged = deep_merge(merged, {b: user[b] for b in BLOCKS if b in user})
    missing = [b for b in BLOCKS if not isinstance(merged.get(b), dict)]
    if missing:
        raise ValueError(f"settings: the block(s) {', '.join(missing)} are missing")
    settings = {b: merged[b] for b in BLOCKS}
    check_blocks(settings)
    return settings


def _names(text: str) -> list[str]:
    return [] if text.strip().lower() == "none" else [t for t in text.split(",") if t]


def parser() -> argparse.ArgumentParser:
    from arcal.audit.run import STAGES

    ap = argparse.ArgumentParser(
        prog="python -m arcal.audit", description=__doc__.split("\n\n")[0],
        epilog="Example: python -m arcal.audit model.npz --out audit/ (README, 'Auditing any model')",
    )
    ap.add_argument("input", nargs="?", help="one npz/csv file (split column optional)")
    ap.add_argument("--calib", help="the calibration examples (with --test instead of INPUT)")
    ap.add_argument("--test", help="the test examples")
    ap.add_argument("--out", required=True, help="folder for the CSVs and the report")
    ap.add_argument("--settings", help="YAML in config.yaml's shape merged over its calibration: "
                    "and planted: blocks")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed of every stage (default: an arcal dump's own seed, else 0)")
    ap.add_argument("--features", type=_names, default=None,
                    help="comma-separated features to audit (default: all a file holds; for an "
                    "arcal dump r_agg,depth_var, or attn_entropy for a baseline)")
    ap.add_argument("--matrices", type=_names, default=None,
                    help="comma-separated per-layer matrices for the capacity audit, or 'none' "
                    "(default: all a file holds; for an arcal dump H, or A for a baseline)")
    ap.add_argument("--planted-feature", default=None,
                    help="feature of the planted control (default: planted.feature if audited, "
                    "else the first feature)")
    ap.add_argument("--stages", type=_names, default=list(STAGES),
                    help=f"comma-separated stages to run (default: {','.join(STAGES)})")
    ap.add_argument("--n-perm", type=int, default=None, help="override calibration.n_perm")
    ap.add_argument("--repetitions", type=int, default=None, help="override planted.repetitions")
    ap.add_argument("--no-pdf", action="store_true", help="write the HTML report only")
    ap.add_argument("--log", default=None, help="also write the log to this file")
    return ap


def audit(
    *, out: str | Path, input: str | Path | None = None, calib: str | Path | None = None,
    test: str | Path | None = None, settings: dict[str, Any] | None = None, seed: int | None = None,
    features: list[str] | None = None, matrices: list[str] | None = None,
    planted_feature: str | None = None, stages: list[str] | None = None, pdf: bool = True,
) -> dict[str, Any]:
    """Check the inputs, run the stages, write the report; the library form of the command line.
    Returns {"settings": the audited blocks, "seed": the seed used, "report": paths}."""
    from arcal.audit.inputs import AuditInputError, load_audit
    from arcal.audit.report import write_report
    from arcal.audit.run import STAGES, run_audit

    settings = settings if settings is not None else load_settings()
    c = settings["calibration"]
    log.info("audit: checking the inputs")
    data = load_audit(input, calib=calib, test=test, features=features, matrices=matrices,
                      n_bins=c["n_bins"], min_bin=c["min_bin"], default_features=c["features"],
                      split_seed=seed if seed is not None else 0)
    if planted_feature is not None and planted_feature not in data.features:
        raise AuditInputError(data.provenance["files"]["calib"]["path"], planted_feature,
                              f"the planted feature must be an audited one ({', '.join(data.features)})")
    if seed is None:
        seed = data.seed if data.seed is not None else 0
        log.info("audit: seed %d (%s)", seed, "the dump's own" if data.seed is not None else "default")
    log.info("audit: %d calibration and %d test examples, %d classes; features %s; matrices %s",
             data.calib.n, data.test.n, data.provenance["classes"], ", ".join(data.features),
             ", ".join(data.matrices) or "none")
    stages = list(STAGES) if stages is None else stages
    used = run_audit(data, settings, seed, out, stages, planted_feature)
    log.info("audit: writing the report")
    written = write_report(out, data, used, pdf=pdf)
    log.info("audit: report %s", ", ".join(str(p) for p in written.values()))
    return {"settings": used, "seed": seed, "report": written}


def main(argv: list[str] | None = None) -> None:
    from arcal.audit.inputs import AuditInputError
    from arcal.logs import setup

    ap = parser()
    args = ap.parse_args(argv)
    if (args.input is None) == (args.calib is None and args.test is None):
        ap.error("give one INPUT file, or --calib and --test (not both)")
    if (args.calib is None) != (args.test is None):
        ap.error("--calib and --test go together")
    from arcal.audit.run import STAGES

    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        ap.error(f"--stages: unknown {', '.join(unknown)}; choose from {', '.join(STAGES)}")
    try:
        settings = load_settings(args.settings)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        ap.error(str(exc))
    if args.n_perm is not None:
        settings["calibration"]["n_perm"] = args.n_perm
    if args.repetitions is not None:
        settings["planted"]["repetitions"] = args.repetitions
    try:
        check_blocks(settings)
    except ValueError as exc:
        ap.error(f"{exc} (from --n-perm / --repetitions)")
    setup(args.log, title="arcal.audit")
    try:
        audit(out=args.out, input=args.input, calib=args.calib, test=args.test,
              settings=settings, seed=args.seed, features=args.features, matrices=args.matrices,
              planted_feature=args.planted_feature, stages=args.stages, pdf=not args.no_pdf)
    except AuditInputError as exc:
        log.error("%s", exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
