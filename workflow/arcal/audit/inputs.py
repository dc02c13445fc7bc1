"""The audit input format: a model's outputs and traces, as data (README, "Auditing any model").

One file holds, per example, the model's logits (or class probabilities), the label, any number
of named scalar features, optionally per-layer feature matrices and a calib/test split column;
or two files hold the calibration and the test examples. Formats:

* **npz** (``np.savez``): ``logits`` (N, K) or ``probs`` (N, K), ``labels`` (N,), optional
  ``split`` (N,) of "calib"/"test"; every other 1-D array of length N is a scalar feature named
  by its key, every other 2-D array (N, L) a per-layer matrix.
* **csv** (``DataFrame.to_csv(index=False)``): columns ``logits[0]`` ... ``logits[K-1]`` (or
  ``probs[j]``), ``labels``, optional ``split``; a column ``name[j]`` is column j of matrix
  ``name``; every other column is a scalar feature.
* **an arcal dump** (``results/dumps/<cell>/{calib,test}.npz``, checked against the dump
  contract by ``arcal.io.load_dump``): features r_agg, depth_var (AttnRes models) and
  attn_entropy; matrices H, V, H_cls and A.

Parquet is not read: pyarrow is not one of arcal's pinned dependencies; write CSV instead.

Everything is checked before any work, and every problem is an :class:`AuditInputError` naming
the file and the field: shapes, non-finite values, probabilities outside [0, 1] or rows not
summing to 1, non-integer labels or labels out of range, unknown split values, a feature constant
over a split, a split smaller than the settings allow (``min_bin`` examples, and a confidence bin
of the test split holding ``min_bin``, without which the permutation tests cannot run).

Probabilities become logits log p (an exact zero becomes log of the smallest positive float64,
-708.4, so every number stays finite; a zero on the true class then costs 708 nats of NLL).
Without a split column, one file is split at random into halves (seeded, logged).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arcal.calibration import NAME_PATTERN, RESERVED_FEATURES, ProbeInputs, bin_index, softmax
from arcal.io import DUMP_KEYS, load_dump

log = logging.getLogger(__name__)

SPLITS = ("calib", "test")
#: Keys and columns with a fixed meaning; every other one is a feature or a matrix.
STRUCTURAL = ("logits", "probs", "labels", "split")
#: Row sums of probabilities may deviate from 1 by this much (float32 softmax outputs, rounding).
PROB_ATOL = 1e-3
#: The fewest examples a split may hold whatever min_bin says (the MLP probes hold out a fifth).
MIN_EXAMPLES = 10
#: Feature names a file may not use (r_agg and depth_var it may: they are AttnRes's routing
#: features, whose probes are nw-ragg and ar-condcal).
RESERVED = RESERVED_FEATURES - {"r_agg", "depth_var"}
_MATRIX_COLUMN = re.compile(r"^(?P<name>.+)\[(?P<j>\d+)\]$")


class AuditInputError(ValueError):
    """A malformed audit input: ``path`` and ``field`` say where, the message what and how to fix."""

    def __init__(self, path: str | Path, field: str, message: str) -> None:
        super().__init__(f"{path}: {field}: {message}")
        self.path, self.field = str(path), field


@dataclass
class Table:
    """One input file, validated on its own (before splitting)."""

    path: str
    kind: str  # "arcal-dump", "npz" or "csv"
    logits: np.ndarray  # (N, K) float64
    labels: np.ndarray  # (N,) int64
    source: str  # "logits" or "probs"
    split: np.ndarray | None = None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def k(self) -> int:
        return int(self.logits.shape[1])


@dataclass
class AuditData:
    """Validated calibration and test splits and the features and matrices to audit."""

    calib: ProbeInputs
    test: ProbeInputs
    features: list[str]
    matrices: list[str]
    provenance: dict[str, Any]
    seed: int | None = None  # the seed an arcal dump records (its cell's), else None


# ----------------------------------------------------------------------------- reading


def read_table(path: str | Path) -> Table:
    """Read and validate one input file (npz, csv or an arcal dump)."""
    p = Path(path)
    if not p.is_file():
        raise AuditInputError(p, "file", "does not exist")
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        raise AuditInputError(p, "file", "parquet is not supported (pyarrow is not among arcal's "
                              "dependencies); write CSV: df.to_csv(path, index=False)")
    if suffix == ".npz":
        return _read_npz(p)
    if suffix == ".csv":
        return _read_csv(p)
    raise AuditInputError(p, "file", f"unknown format {suffix or '(no suffix)'!r}; use .npz or .csv")


def _read_npz(path: Path) -> Table:
    if not zipfile.is_zipfile(path):
        raise AuditInputError(path, "file", "not an npz archive (the zip of arrays np.savez writes)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile, pickle refusal, truncation
        raise AuditInputError(path, "file", f"not a readable npz ({exc})") from None
    if "meta" in arrays and set(DUMP_KEYS) <= set(arrays):
        return _from_dump(path)
    columns: dict[str, np.ndarray] = {}
    features: dict[str, np.ndarray] = {}
    matrices: dict[str, np.ndarray] = {}
    for key, arr in arrays.items():
        if key == "split":
            columns[key] = arr
        elif key in STRUCTURAL:
            columns[key] = arr
        elif arr.dtype.kind not in "biuf":
            raise AuditInputError(path, key, f"dtype {arr.dtype} is not numeric; a feature or "
                                  "matrix holds numbers (only split holds strings)")
        elif arr.ndim == 1:
            features[key] = arr
        elif arr.ndim == 2:
            matrices[key] = arr
        else:
            raise AuditInputError(path, key, f"shape {arr.shape}: expected a scalar feature (N,) "
                                  "or a per-layer matrix (N, L)")
    return _table(path, "npz", columns, features, matrices)


def _read_csv(path: Path) -> Table:
    import pandas as pd

    with open(path, newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise AuditInputError(path, "file", "empty CSV (no header line)")
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise AuditInputError(path, dupes[0], f"column appears {header.count(dupes[0])} times")
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except Exception as exc:
        raise AuditInputError(path, "file", f"not a readable CSV ({exc})") from None
    if df.empty:
        raise AuditInputError(path, "file", "no rows")
    columns: dict[str, np.ndarray] = {}
    features: dict[str, np.ndarray] = {}
    groups: dict[str, dict[int, str]] = {}
    for col in df.columns:
        m = _MATRIX_COLUMN.match(col)
        if m:
            groups.setdefault(m["name"], {})[int(m["j"])] = col
        elif col in STRUCTURAL:
            columns[col] = df[col].to_numpy()
        elif not pd.api.types.is_numeric_dtype(df[col]):
            raise AuditInputError(path, col, f"values are not numbers (dtype {df[col].dtype}, e.g. "
                                  f"{df[col].iloc[0]!r}); a feature column holds numbers")
        else:
            features[col] = df[col].to_numpy(dtype=np.float64)
    matrices: dict[str, np.ndarray] = {}
    for name, cols in groups.items():
        if sorted(cols) != list(range(len(cols))):
            raise AuditInputError(path, f"{name}[j]", f"columns must be numbered 0 .. L-1 without "
                                  f"gaps, got {sorted(cols)}")
        block = df[[cols[j] for j in range(len(cols))]]
        bad = [c for c in block.columns if not pd.api.types.is_numeric_dtype(block[c])]
        if bad:
            raise AuditInputError(path, bad[0], "values are not numbers")
        if name in ("labels", "split"):
            raise AuditInputError(path, f"{name}[0]", f"{name} is one column, not a matrix")
        target = columns if name in ("logits", "probs") else matrices
        target[name] = block.to_numpy(dtype=np.float64)
    return _table(path, "csv", columns, features, matrices)


def _from_dump(path: Path) -> Table:
    """An arcal dump, checked against the dump contract; its traces become features/matrices."""
    try:
        d = load_dump(path)
    except ValueError as exc:
        raise AuditInputError(path, "dump contract", str(exc).removeprefix(f"dump {path}: ")) from None
    features: dict[str, np.ndarray] = {}
    matrices: dict[str, np.ndarray] = {}
    if d.n_consumers > 0:
        features.update(r_agg=d.r_agg, depth_var=d.depth_var)
        matrices.update(H=d.H, V=d.V)
        if d.H_cls is not None:
            matrices["H_cls"] = d.H_cls
    if d.A is not None:
        features["attn_entropy"] = d.attn_entropy
        matrices["A"] = d.A
    table = _table(path, "arcal-dump", {"logits": d.logits, "labels": d.labels}, features, matrices)
    table.meta = d.meta
    return table


# ----------------------------------------------------------------------------- validation


def _finite(path: Path, name: str, arr: np.ndarray) -> np.ndarray:
    try:
        out = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AuditInputError(path, name, f"cannot be read as numbers ({exc})") from None
    bad = ~np.isfinite(out)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise AuditInputError(path, name, f"{int(bad.sum())} NaN or infinite value(s) (first at "
                              f"row {int(rows[0])}, counting from 0); remove those examples or repair the values")
    return out


def _name(path: Path, name: str, what: str) -> None:
    if not NAME_PATTERN.match(name):
        raise AuditInputError(path, name, f"not a valid {what} name: use a letter, then letters, "
                              "digits or underscores")
    if what == "feature" and name in RESERVED:
        raise AuditInputError(path, name, "reserved name (the suite derives conf and entropy from "
                              "the logits, and nw-ragg is the probe on r_agg); rename the feature")


def _table(path: Path, kind: str, columns: dict[str, np.ndarray],
           features: dict[str, np.ndarray], matrices: dict[str, np.ndarray]) -> Table:
    """Check one file's arrays (module docstring) and convert them."""
    given = [k for k in ("logits", "probs") if k in columns]
    if len(given) != 1:
        raise AuditInputError(path, "logits", "give exactly one of logits (N, K) and probs (N, K)"
                              + (f"; found both" if given else "; found neither"))
    source = given[0]
    scores = _finite(path, source, columns[source])
    if scores.ndim != 2 or scores.shape[1] < 2 or scores.shape[0] < 1:
        raise AuditInputError(path, source, f"expected shape (N, K) with K >= 2 classes, got "
                              f"{scores.shape}")
    n, k = scores.shape
    if source == "probs":
        if scores.min() < 0 or scores.max() > 1:
            raise AuditInputError(path, "probs", f"probabilities must lie in [0, 1], got range "
                                  f"[{scores.min():.4g}, {scores.max():.4g}]")
        dev = np.abs(scores.sum(axis=1) - 1.0)
        if dev.max() > PROB_ATOL:
            raise AuditInputError(path, "probs", f"rows must sum to 1 (row {int(dev.argmax())} "
                                  f"sums to {scores[dev.argmax()].sum():.6g}); pass softmax output "
                                  "or logits")
        logits = np.log(np.maximum(scores, np.finfo(np.float64).tiny))
    else:
        logits = scores
    if "labels" not in columns:
        raise AuditInputError(path, "labels", "missing: one integer class id in [0, K) per example")
    labels = np.asarray(columns["labels"])
    if labels.shape != (n,):
        raise AuditInputError(path, "labels", f"expected shape ({n},) to match {source}, got "
                              f"{labels.shape}")
    if labels.dtype.kind not in "biu":
        ok = labels.dtype.kind == "f" and np.isfinite(labels).all() and (labels == np.round(labels)).all()
        if not ok:
            raise AuditInputError(path, "labels", f"must be integer class ids, got dtype "
                                  f"{labels.dtype} (e.g. {labels.ravel()[0].item()!r})")
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() >= k:
        raise AuditInputError(path, "labels", f"must lie in [0, {k}) for {k} classes, got range "
                              f"[{labels.min()}, {labels.max()}]")
    split = None
    if "split" in columns:
        split = np.asarray(columns["split"]).astype(str)
        if split.shape != (n,):
            raise AuditInputError(path, "split", f"expected shape ({n},), got {split.shape}")
        unknown = sorted(set(np.unique(split)) - set(SPLITS))
        if unknown:
            raise AuditInputError(path, "split", f"values must be 'calib' or 'test', got "
                                  f"{[str(u) for u in unknown[:5]]}")
    feats = {}
    for name, arr in features.items():
        _name(path, name, "feature")
        a = _finite(path, name, arr)
        if a.shape != (n,):
            raise AuditInputError(path, name, f"a feature needs shape ({n},), got {a.shape}")
        feats[name] = a
    mats = {}
    for name, arr in matrices.items():
        _name(path, name, "matrix")
        if name in feats:
            raise AuditInputError(path, name, "used both as a feature and as a matrix name")
        a = _finite(path, name, arr)
        if a.ndim != 2 or a.shape[0] != n or a.shape[1] < 1:
            raise AuditInputError(path, name, f"a per-layer matrix needs shape ({n}, L) with "
                                  f"L >= 1, got {a.shape}")
        mats[name] = a
    return Table(str(path), kind, logits, labels, source, split, feats, mats)


def _rows(table: Table, idx: np.ndarray) -> Table:
    return Table(table.path, table.kind, table.logits[idx], table.labels[idx], table.source, None,
                 {k: v[idx] for k, v in table.features.items()},
                 {k: v[idx] for k, v in table.matrices.items()}, table.meta)


def _same_layout(calib: Table, test: Table) -> None:
    """The test file must have the calibration file's classes, features and matrices."""
    if test.k != calib.k:
        raise AuditInputError(test.path, test.source, f"{test.k} classes, the calibration file "
                              f"{calib.path} has {calib.k}")
    for what, a, b in (("feature", calib.features, test.features),
                       ("matrix", calib.matrices, test.matrices)):
        for name in sorted(set(a) ^ set(b)):
            where = test.path if name in a else calib.path
            other = calib.path if name in a else test.path
            raise AuditInputError(where, name, f"{what} missing here but present in {other}; "
                                  "both files need the same features and matrices")
        for name in a if what == "matrix" else ():
            if a[name].shape[1] != b[name].shape[1]:
                raise AuditInputError(test.path, name, f"{b[name].shape[1]} columns, the "
                                      f"calibration file has {a[name].shape[1]}")


def _choose(table: Table, asked: Sequence[str] | None, available: dict[str, np.ndarray],
            default: list[str], what: str) -> list[str]:
    if asked is None:
        return default
    for name in asked:
        if name not in available:
            hint = ("; dumps written before arcal recorded attention lack it: re-run the dump "
                    "stage (snakemake --forcerun dump)"
                    if table.kind == "arcal-dump" and name in ("attn_entropy", "A") else "")
            raise AuditInputError(table.path, name, f"no such {what}; the file has "
                                  f"{', '.join(available) or 'none'}{hint}")
    return list(dict.fromkeys(asked))


def _check_split(table: Table, split: str, n_bins: int, min_bin: int, features: list[str]) -> None:
    least = max(min_bin, MIN_EXAMPLES)
    if table.n < least:
        raise AuditInputError(table.path, "labels", f"the {split} split has {table.n} examples; "
                              f"the suite needs at least {least} (min_bin={min_bin}, and "
                              f"{MIN_EXAMPLES} for the probes)")
    for name in features:
        values = table.features[name]
        if np.ptp(values) == 0:
            raise AuditInputError(table.path, name, f"constant over the {split} split (every "
                                  f"example has {values[0]:.6g}): it cannot say anything beyond "
                                  "confidence; drop it with --features")
    if split == "test":
        conf = softmax(table.logits).max(axis=1)
        largest = int(np.bincount(bin_index(conf, n_bins), minlength=n_bins).max())
        if largest < min_bin:
            raise AuditInputError(table.path, table.source, f"no confidence bin of the test split "
                                  f"holds min_bin={min_bin} examples (largest: {largest} of "
                                  f"{table.n}), so no permutation test could run; give more "
                                  "examples, or lower min_bin or n_bins in the settings")


def _inputs(table: Table, features: list[str], matrices: list[str]) -> ProbeInputs:
    own = {f: table.features[f] for f in features if f in ("r_agg", "depth_var")}
    return ProbeInputs(
        table.logits, table.labels, H=table.matrices["H"] if "H" in matrices else None,
        extra={f: table.features[f] for f in features if f not in own},
        matrices={m: table.matrices[m] for m in matrices if m != "H"}, **own,
    )


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_audit(
    path: str | Path | None = None,
    *,
    calib: str | Path | None = None,
    test: str | Path | None = None,
    features: Sequence[str] | None = None,
    matrices: Sequence[str] | None = None,
    n_bins: int = 15,
    min_bin: int = 30,
    default_features: Sequence[str] = ("r_agg", "depth_var"),
    split_seed: int = 0,
) -> AuditData:
    """Read and check the audit's input: one file (``path``) or two (``calib`` and ``test``).

    ``features`` / ``matrices`` choose what to audit (default: everything a generic file holds;
    for arcal dumps what the workflow audits: ``default_features`` that the dump has, else its
    attention entropy, and the matrix H, else A). ``n_bins`` and ``min_bin`` are the settings the
    sizes are checked against; ``split_seed`` seeds the random halves of a file without a split
    column. Raises AuditInputError before any work.
    """
    if (path is None) == (calib is None and test is None) or ((calib is None) != (test is None)):
        raise ValueError("give one input file, or both calib= and test= files")
    if path is not None:
        whole = read_table(path)
        if whole.split is None:
            rng = np.random.default_rng(split_seed)
            perm = rng.permutation(whole.n)
            idx = {"calib": np.sort(perm[: whole.n // 2]), "test": np.sort(perm[whole.n // 2:])}
            how = f"random halves (no split column; seed {split_seed})"
            log.warning("%s has no split column: split at random into halves of %d and %d "
                        "examples (seed %d)", path, len(idx["calib"]), len(idx["test"]), split_seed)
        else:
            idx = {s: np.flatnonzero(whole.split == s) for s in SPLITS}
            how = "the split column"
            for s in SPLITS:
                if not len(idx[s]):
                    raise AuditInputError(path, "split", f"no example is marked {s!r}; both "
                                          "splits are needed (or drop the column for random halves)")
        tables = {s: _rows(whole, idx[s]) for s in SPLITS}
    else:
        tables = {"calib": read_table(calib), "test": read_table(test)}
        for s, t in tables.items():
            if t.split is not None:
                raise AuditInputError(t.path, "split", f"the --{s} file must not have a split "
                                      "column (give one file with a split column instead)")
        _same_layout(tables["calib"], tables["test"])
        how = "two files"
    first = tables["calib"]
    if first.kind == "arcal-dump":
        feat_default = [f for f in default_features if f in first.features]
        feat_default = feat_default or [f for f in ("attn_entropy",) if f in first.features]
        mat_default = ["H"] if "H" in first.matrices else [m for m in ("A",) if m in first.matrices]
    else:
        feat_default, mat_default = list(first.features), list(first.matrices)
    chosen_f = _choose(first, features, first.features, feat_default, "feature")
    chosen_m = _choose(first, matrices, first.matrices, mat_default, "matrix")
    if not chosen_f:
        raise AuditInputError(first.path, "features", "nothing to audit: the file holds no scalar "
                              "feature (add a 1-D array, or a column, per model-internal trace)")
    for s in SPLITS:
        _check_split(tables[s], s, n_bins, min_bin, chosen_f)
    data = AuditData(
        _inputs(tables["calib"], chosen_f, chosen_m),
        _inputs(tables["test"], chosen_f, chosen_m),
        chosen_f, chosen_m,
        {
            "files": {s: {"path": t.path, "sha256": _sha256(t.path), "kind": t.kind,
                          "source": t.source} for s, t in tables.items()},
            "split": how,
            "n": {s: t.n for s, t in tables.items()},
            "classes": first.k,
            "features": chosen_f,
            "matrices": {m: int(first.matrices[m].shape[1]) for m in chosen_m},
            "meta": first.meta,
        },
    )
    seed = first.meta.get("seed") if first.kind == "arcal-dump" else None
    data.seed = int(seed) if isinstance(seed, int) else None
    return data
