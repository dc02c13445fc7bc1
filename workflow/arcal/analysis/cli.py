"""The shared command line of the per-cell stages: dumps in, a settings YAML, a seed, a CSV out.

Every stage reads `--settings` in one shape, the config's: a YAML file with the blocks the stage
uses under their config names (`calibration:`, and `planted:` for the planted control), so
config.yaml itself is a valid settings file.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from arcal.calibration import ProbeInputs
from arcal.io import load_dump


def parse_cell_args(
    prog: str, doc: str | None, dumps: tuple[str, ...], argv: list[str] | None = None,
    extra: tuple[tuple[str, str], ...] = (), blocks: tuple[str, ...] = ("calibration",),
) -> tuple[argparse.Namespace, list[ProbeInputs], dict[str, Any]]:
    """Parse `<dump>... --settings YAML [--seed N] --out CSV` (plus `extra` required options);
    return the arguments, the dumps as ProbeInputs and the settings: the config `blocks` the
    stage reads, by name. A settings file without one of them is an error naming it."""
    ap = argparse.ArgumentParser(prog=prog, description=doc)
    for name in dumps:
        ap.add_argument(name, help=f"{name}.npz of a cell")
    ap.add_argument(
        "--settings", required=True,
        help=f"YAML with the config block(s) {', '.join(blocks)} (config.yaml works)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the cell's seed (seeds the stage)")
    ap.add_argument("--out", required=True, help="CSV to write")
    for flag, help_text in extra:
        ap.add_argument(flag, required=True, help=help_text)
    args = ap.parse_args(argv)
    with open(args.settings) as f:
        settings = yaml.safe_load(f)
    missing = [b for b in blocks if not isinstance((settings or {}).get(b), dict)]
    if missing:
        ap.error(
            f"--settings {args.settings} lacks the config block(s) {', '.join(missing)}: it is "
            f"read like config.yaml, with the settings under {', '.join(f'{b}:' for b in blocks)}"
        )
    inputs = [ProbeInputs.from_dump(load_dump(getattr(args, name))) for name in dumps]
    return args, inputs, {b: settings[b] for b in blocks}
