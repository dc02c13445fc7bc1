"""Atomic file writes and the dump file contract.

Every file a stage writes goes through one of the `atomic_*` helpers: the bytes land in a
temporary file in the destination folder and are moved into place with `os.replace`, which is
atomic on POSIX file systems. A crash (or a Snakemake job killed at its time limit) therefore
leaves either the old file or the new one, never a truncated one.

`load_dump` reads a dump written by `arcal.dump` (docs/methods.md, "The dump contract") and checks the
contract, so every analysis stage can trust the arrays it gets.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

DUMP_KEYS = ("logits", "labels", "H", "V", "r_agg", "depth_var", "n_sources", "consumers", "meta")
"""Keys every dump holds; `H_cls` is added when the model has a class token."""
ATTENTION_KEYS = ("A", "attn_entropy", "attn_layers")
"""The attention trace (`arcal.models.attention`): all three or none (dumps written before it)."""


@contextmanager
def _atomic(path: str | os.PathLike, mode: str) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path`; on success move it over `path`, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with _atomic(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """`np.savez` to `path` atomically (uncompressed, so array bytes are reproducible).

    Object arrays are refused: they would need pickle, which readers do not allow.
    """
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise ValueError(
                f"array {key!r} for {path} has dtype object; store strings as a str array"
            )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """`torch.save(obj)` to `path` atomically."""
    import torch

    with _atomic(path, "wb") as f:
        torch.save(obj, f)


def atomic_write_csv(path: str | os.PathLike, df: Any) -> None:
    """Write a pandas DataFrame to `path` as CSV (no index) atomically."""
    atomic_write_text(path, df.to_csv(index=False))


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """The commit hash of the git checkout holding `path` (default: this package), or None."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


@dataclass
class Dump:
    """One split of one cell: logits, labels and routing summaries (docs/methods.md, "The dump contract").

    `H`, `V` (and `H_cls` when the model has a class token) are (N, L) per-consumer summaries;
    `r_agg` and `depth_var` their per-image means over consumers (all NaN when L = 0).
    """

    path: str
    logits: np.ndarray
    labels: np.ndarray
    H: np.ndarray
    V: np.ndarray
    r_agg: np.ndarray
    depth_var: np.ndarray
    n_sources: np.ndarray
    consumers: np.ndarray
    meta: dict = field(default_factory=dict)
    H_cls: np.ndarray | None = None
    A: np.ndarray | None = None
    attn_entropy: np.ndarray | None = None
    attn_layers: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.logits.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.logits.shape[1])

    @property
    def n_consumers(self) -> int:
        return int(self.H.shape[1])


def load_dump(path: str | os.PathLike) -> Dump:
    """Read a dump `.npz` and validate the contract; raise ValueError naming the file if broken.

    Checks: exactly the contract's keys (plus optional `H_cls`, and the attention trace
    `ATTENTION_KEYS`, all three or none); consistent shapes; finite logits (the error gives the
    number of rows with NaN/inf); labels in [0, K); for L > 0 finite `r_agg` and `depth_var`, for
    L = 0 all-NaN ones; attention entropies finite and in [0, 1].
    """
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"dump {path} does not exist; run the dump stage (python -m arcal.dump)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile / format errors of a truncated file
        raise ValueError(
            f"dump {path} is unreadable ({exc}); delete it and re-run the dump stage"
        ) from exc

    def bad(msg: str) -> ValueError:
        return ValueError(f"dump {path}: {msg}")

    keys = set(arrays)
    missing = set(DUMP_KEYS) - keys
    extra = keys - set(DUMP_KEYS) - {"H_cls"} - set(ATTENTION_KEYS)
    if missing or extra:
        raise bad(f"missing keys {sorted(missing)}, unexpected keys {sorted(extra)}")
    attention = [k for k in ATTENTION_KEYS if k in keys]
    if attention and len(attention) != len(ATTENTION_KEYS):
        raise bad(f"the attention trace needs all of {list(ATTENTION_KEYS)}, got {attention}")
    logits, labels = arrays["logits"], arrays["labels"]
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise bad(f"logits must be (N, K) with K >= 2, got shape {logits.shape}")
    n, k = logits.shape
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise bad(f"labels must be integer of shape ({n},), got {labels.dtype} {labels.shape}")
    bad_rows = int((~np.isfinite(logits).all(axis=1)).sum())
    if bad_rows:
        raise bad(f"{bad_rows} of {n} rows of logits contain NaN or inf")
    if n and (labels.min() < 0 or labels.max() >= k):
        raise bad(f"labels must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    H, V = arrays["H"], arrays["V"]
    if H.ndim != 2 or H.shape[0] != n or V.shape != H.shape:
        raise bad(f"H and V must both be ({n}, L), got {H.shape} and {V.shape}")
    n_consumers = H.shape[1]
    H_cls = arrays.get("H_cls")
    if H_cls is not None and H_cls.shape != H.shape:
        raise bad(f"H_cls must have the shape of H {H.shape}, got {H_cls.shape}")
    for name in ("n_sources", "consumers"):
        if arrays[name].shape != (n_consumers,):
            raise bad(f"{name} must have shape ({n_consumers},), got {arrays[name].shape}")
    for name in ("r_agg", "depth_var"):
        a = arrays[name]
        if a.shape != (n,):
            raise bad(f"{name} must have shape ({n},), got {a.shape}")
        if n_consumers > 0 and not np.isfinite(a).all():
            raise bad(
                f"{name} has {int((~np.isfinite(a)).sum())} non-finite values (L = {n_consumers})"
            )
        if n_consumers == 0 and n and not np.isnan(a).all():
            raise bad(f"{name} must be all NaN when there are no consumers (L = 0)")
    if attention:
        A, mean, layers = (arrays[k] for k in ATTENTION_KEYS)
        if A.ndim != 2 or A.shape[0] != n or A.shape[1] < 1:
            raise bad(f"A must be ({n}, L_attn) with L_attn >= 1, got shape {A.shape}")
        if mean.shape != (n,) or layers.shape != (A.shape[1],):
            raise bad(f"attn_entropy must have shape ({n},) and attn_layers ({A.shape[1]},), got "
                      f"{mean.shape} and {layers.shape}")
        for name, a in (("A", A), ("attn_entropy", mean)):
            if not np.isfinite(a).all() or (a.size and (a.min() < 0 or a.max() > 1 + 1e-4)):
                raise bad(f"{name} must be finite normalised entropies in [0, 1]")
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError as exc:
        raise bad(f"meta is not a JSON string ({exc})") from exc
    return Dump(
        path=path,
        logits=logits,
        labels=labels.astype(np.int64, copy=False),
        H=H,
        V=V,
        r_agg=arrays["r_agg"],
        depth_var=arrays["depth_var"],
        n_sources=arrays["n_sources"].astype(np.int64, copy=False),
        consumers=arrays["consumers"],
        meta=meta,
        H_cls=H_cls,
        A=arrays.get("A"),
        attn_entropy=arrays.get("attn_entropy"),
        attn_layers=arrays.get("attn_layers"),
    )
