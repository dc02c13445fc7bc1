"""arcal's C kernels, compiled on first use and loaded with ctypes.

A kernel's C file ships with the package. It is compiled with the system's C compiler (``$CC``,
else ``cc``) into ``$ARCAL_KERNEL_CACHE`` (default ``~/.cache/arcal``), under a name that hashes
the source, the flags and the machine type, so concurrent jobs share one build (the first to
finish renames its library into place) and an edit rebuilds it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
from pathlib import Path

__all__ = ["library"]

_loaded: dict[Path, ctypes.CDLL] = {}


def _build(source: Path, flags: tuple[str, ...], target: Path, remedy: str) -> None:
    compiler = os.environ.get("CC", "cc")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        cmd = [compiler, *flags, "-shared", "-fPIC", str(source), "-o"]
        try:
            done = subprocess.run([*cmd, str(partial)], capture_output=True, text=True)
        except FileNotFoundError:
            done = None
        if done is None or done.returncode != 0:
            why = "not found" if done is None else done.stderr.strip()
            raise RuntimeError(
                f"could not build {source.name} ({' '.join(cmd)} {target}): {why}. Install a C "
                f"compiler (e.g. Debian's gcc) or name one in $CC{remedy}"
            )
        os.replace(partial, target)  # atomic: a concurrent job sees the whole library or none


def library(source: Path, flags: tuple[str, ...], remedy: str = "") -> ctypes.CDLL:
    """The library built from ``source`` with ``flags`` (built once per machine, loaded once per
    process); ``remedy`` ends the error a failed build raises (", or ...")."""
    if source not in _loaded:
        built_for = f"{platform.machine()} {' '.join(flags)}".encode()
        key = hashlib.sha256(source.read_bytes() + built_for).hexdigest()[:16]
        cache = Path(os.environ.get("ARCAL_KERNEL_CACHE", Path.home() / ".cache" / "arcal"))
        target = cache / f"{source.stem}-{key}.so"
        if not target.exists():
            _build(source, flags, target, remedy)
        _loaded[source] = ctypes.CDLL(str(target))
    return _loaded[source]
