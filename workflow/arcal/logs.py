"""Logging set-up shared by the command-line entry points and the Snakemake scripts."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

log = logging.getLogger("arcal")


def setup(
    log_file: str | Path | None = None,
    level: int = logging.INFO,
    title: str = "",
    keep_attempts: bool = False,
) -> None:
    """Send arcal's records at `level`, other libraries' warnings and Python warnings to stderr
    and, if given, to `log_file`. Other libraries log at WARNING and above only: their INFO
    records (fontTools lists every glyph matplotlib subsets into a PDF) would bury ours.

    Snakemake's `log:` only declares a file; a script has to write to it itself. The file is
    appended to, each attempt under a header line, and an uncaught exception is logged with its
    traceback, so the file says why a job failed.

    Snakemake deletes a rule's log before every attempt of its job. With `keep_attempts`, the log
    is also written to a hidden `.<name>.attempts` beside it, which survives a failed or killed
    attempt and is copied to the top of the next attempt's log (a retried job's log shows why the
    earlier attempts died); a successful attempt removes it.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_attempts:
            attempts = path.with_name(f".{path.name}.attempts")
            if attempts.exists():
                with path.open("a") as f:
                    f.write(attempts.read_text(errors="replace"))
            handlers.append(logging.FileHandler(attempts, mode="a"))
            atexit.register(_forget_attempts, attempts)
        handlers.append(logging.FileHandler(path, mode="a"))
    logging.basicConfig(level=logging.WARNING, format=FORMAT, handlers=handlers, force=True)
    log.setLevel(level)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    log.info(
        "==== %s started: pid %d on %s ====",
        title or Path(sys.argv[0]).name,
        os.getpid(),
        socket.gethostname(),
    )


def setup_rule(snakemake: Any) -> None:
    """`setup` for a Snakemake `script:`: its rule log, headed by the rule and its wildcards,
    keeping the logs of earlier attempts."""
    where = ", ".join(f"{k}={v}" for k, v in snakemake.wildcards.items())
    title = f"rule {snakemake.rule}" + (f" ({where})" if where else "")
    setup(snakemake.log[0], title=title, keep_attempts=True)


_failed = False


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """Log an uncaught exception (traceback included) to every handler, stderr and the file."""
    global _failed
    _failed = True
    log.critical("failed: %s: %s", kind.__name__, exc, exc_info=(kind, exc, tb))


def _forget_attempts(attempts: Path) -> None:
    """At a clean exit, the earlier attempts are history: the log of this one holds them."""
    if not _failed:
        attempts.unlink(missing_ok=True)
