"""`arcal <stage> ...` (or `python -m arcal <stage> ...`): every stage's command line in one place.

Each stage is a module with its own command line (`python -m arcal.train --help`); this
dispatcher only finds it by name, so `arcal train --out runs/x` is `python -m arcal.train --out
runs/x`. Modules are imported only when their stage is run (torch is slow to import).
"""

from __future__ import annotations

import importlib
import sys

import arcal

# Stage name -> (module, what it does), in workflow order.
STAGES = {
    "data": ("arcal.data", "write a dataset's deterministic splits and manifest"),
    "train": ("arcal.train", "train one cell (resumes from its checkpoint)"),
    "dump": ("arcal.dump", "dump logits and routing summaries of a trained model"),
    "metrics": ("arcal.analysis.metrics", "probe-free calibration metrics of a dump"),
    "probes": ("arcal.analysis.probes", "fit calibration probes on calib, score them on test"),
    "permutation": ("arcal.analysis.permutation", "matched-confidence gaps, permutation tests"),
    "bandwidth": ("arcal.analysis.bandwidth", "Nadaraya-Watson bandwidth sensitivity"),
    "planted": ("arcal.analysis.planted", "the planted control on a cell's dumps"),
    "audit": ("arcal.audit.cli", "the whole diagnostic suite on any model's traces"),
    "summarise": ("arcal.report.aggregate", "tidy summaries across cells and seeds"),
    "tables": ("arcal.report.tables", "LaTeX tables from the summaries"),
    "figures": ("arcal.report.figures", "figures from the summaries"),
}


def usage() -> str:
    width = max(map(len, STAGES))
    lines = [f"  {name:<{width}}  {what}" for name, (_, what) in STAGES.items()]
    return (
        f"usage: arcal <stage> [options]   (arcal {arcal.__version__})\n\n"
        "Runs one stage of the arcal workflow by itself; `arcal <stage> --help` lists its "
        "options.\nThe whole study runs with Snakemake: snakemake --profile profiles/demo\n\n"
        "stages:\n" + "\n".join(lines)
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] not in STAGES:
        print(f"arcal: unknown stage {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    importlib.import_module(STAGES[argv[0]][0]).main(argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
