"""Logging set-up shared by the command-line entry points and the Snakemake scripts."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(log_file: str | Path | None = None, level: int = logging.INFO) -> None:
    """Send log records (and Python warnings) to stderr and, if given, to `log_file`.

    Snakemake's `log:` only declares a file; a script has to write to it itself.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)
