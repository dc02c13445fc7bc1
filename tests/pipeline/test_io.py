"""Atomic writers and dump validation (arcal.io)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arcal.io import (
    DUMP_KEYS,
    atomic_save_npz,
    atomic_torch_save,
    atomic_write_csv,
    atomic_write_text,
    git_commit,
    load_dump,
)


def test_atomic_writers_write_and_leave_no_temporary_files(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a" / "x.txt", "hello")
    atomic_write_csv(tmp_path / "a" / "t.csv", pd.DataFrame({"u": [1, 2], "v": [0.5, 1.5]}))
    atomic_save_npz(tmp_path / "a" / "z.npz", w=np.arange(3))
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert pd.read_csv(tmp_path / "a" / "t.csv").to_dict("list") == {"u": [1, 2], "v": [0.5, 1.5]}
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "z.npz")["w"], np.arange(3))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["t.csv", "x.txt", "z.npz"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    class Broken:
        def to_csv(self, index: bool) -> str:
            raise RuntimeError("disk on fire")

    atomic_write_text(tmp_path / "t.csv", "old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write_csv(tmp_path / "t.csv", Broken())
    with pytest.raises(Exception):
        atomic_torch_save(tmp_path / "t.csv", {"f": lambda: 0})  # fails half-way through writing
    with pytest.raises(ValueError, match="dtype object"):
        atomic_save_npz(tmp_path / "t.csv", bad=np.array([{}, None]))  # would need pickle
    assert (tmp_path / "t.csv").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def _dump_arrays(
    n: int = 6, k: int = 3, L: int = 2, cls_token: bool = True
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    H = rng.uniform(size=(n, L)).astype(np.float32)
    arrays = {
        "logits": rng.normal(size=(n, k)).astype(np.float32),
        "labels": np.arange(n) % k,
        "H": H,
        "V": H.copy(),
        "r_agg": H.mean(1) if L else np.full(n, np.nan, np.float32),
        "depth_var": H.mean(1) if L else np.full(n, np.nan, np.float32),
        "n_sources": np.arange(2, 2 + L),
        "consumers": np.array([f"blocks.{i}.mlp" for i in range(L)], dtype=str).reshape(L),
        "meta": np.array(json.dumps({"dataset": "d", "seed": 0})),
    }
    if cls_token:
        arrays["H_cls"] = H.copy()
    return arrays


def test_load_dump_accepts_the_contract(tmp_path: Path) -> None:
    atomic_save_npz(tmp_path / "d.npz", **_dump_arrays())
    d = load_dump(tmp_path / "d.npz")
    assert (d.n, d.n_classes, d.n_consumers) == (6, 3, 2) and d.meta["dataset"] == "d"
    assert d.H_cls is not None and list(d.consumers) == ["blocks.0.mlp", "blocks.1.mlp"]
    atomic_save_npz(tmp_path / "b.npz", **_dump_arrays(L=0, cls_token=False))
    b = load_dump(tmp_path / "b.npz")
    assert b.H.shape == (6, 0) and b.H_cls is None and np.isnan(b.r_agg).all()


def test_load_dump_rejects_nan_logits_naming_file_and_rows(tmp_path: Path) -> None:
    arrays = _dump_arrays()
    arrays["logits"][[1, 4], 0] = np.nan
    arrays["logits"][4, 2] = np.inf
    atomic_save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz.*2 of 6 rows of logits contain NaN or inf"):
        load_dump(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("depth_var"), "missing keys \\['depth_var'\\]"),
        (lambda a: a.update(extra=np.zeros(1)), "unexpected keys \\['extra'\\]"),
        (lambda a: a.update(labels=np.full(6, 3)), "labels must lie in \\[0, 3\\)"),
        (lambda a: a.update(V=np.zeros((6, 3), np.float32)), "H and V"),
        (lambda a: a["r_agg"].__setitem__(0, np.nan), "r_agg has 1 non-finite"),
        (lambda a: a.update(n_sources=np.arange(3)), "n_sources must have shape"),
    ],
)
def test_load_dump_rejects_contract_violations(tmp_path: Path, change, message: str) -> None:
    arrays = _dump_arrays()
    change(arrays)
    atomic_save_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        load_dump(tmp_path / "d.npz")


def test_load_dump_reports_a_truncated_file(tmp_path: Path) -> None:
    atomic_save_npz(tmp_path / "d.npz", **_dump_arrays())
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="unreadable"):
        load_dump(tmp_path / "d.npz")


def test_dump_keys_match_the_design() -> None:
    assert set(DUMP_KEYS) == {
        "logits",
        "labels",
        "H",
        "V",
        "r_agg",
        "depth_var",
        "n_sources",
        "consumers",
        "meta",
    }


def test_git_commit_is_none_outside_a_repository(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
