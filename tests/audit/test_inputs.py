"""The audit input format: what it accepts, and a clear error naming the file and the field for
every malformed input, before any work (arcal.audit.inputs)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from arcal.audit import AuditInputError, load_audit
from arcal.calibration import softmax

from audit_fixtures import generic_arrays


def _npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def _csv(path: Path, arrays: dict) -> Path:
    """The same input as a CSV: matrices as name[j] columns."""
    cols = {}
    for key, a in arrays.items():
        a = np.asarray(a)
        if a.ndim == 2:
            cols.update({f"{key}[{j}]": a[:, j] for j in range(a.shape[1])})
        else:
            cols[key] = a
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


def _edit(**changes) -> Callable[[Path], tuple[dict, dict]]:
    """A one-file npz case: generic_arrays() with keys replaced (None removes)."""
    def make(tmp: Path) -> dict:
        arrays = generic_arrays()
        for k, v in changes.items():
            if v is None:
                arrays.pop(k)
            else:
                arrays[k] = v(arrays) if callable(v) else v
        return {"path": _npz(tmp / "model.npz", arrays)}
    return make


def _nan_at(key: str, row: int = 7):
    def f(a):
        x = np.array(a[key], dtype=float)
        x.flat[row] = np.nan
        return x
    return f


def _probs(scale: float = 1.0, bad_row: bool = False):
    def f(a):
        p = softmax(np.asarray(a["logits"])) * scale
        if bad_row:
            p[3] = p[3] * 0.5
        return p
    return f


def _spread_confidence(n: int):
    """Logits whose confidences spread evenly over [0.2, 1): 100 test examples in 12 bins."""
    def f(a):
        u = np.linspace(0.21, 0.99, n)
        return np.column_stack([np.log(4 * u / (1 - u)), np.zeros((n, 4))])
    return f


def _constant_in_calib(a):
    r = np.array(a["router"])
    r[a["split"] == "calib"] = 0.5
    return r


def _two(calib_changes: dict | None = None, test_changes: dict | None = None):
    """A two-file case: the generic arrays' halves without the split column, edited."""
    def make(tmp: Path) -> dict:
        arrays = generic_arrays()
        split = arrays.pop("split")
        files = {}
        for s, changes in (("calib", calib_changes or {}), ("test", test_changes or {})):
            part = {k: v[split == s] for k, v in arrays.items()}
            for k, v in changes.items():
                if v is None:
                    part.pop(k)
                else:
                    part[k] = v(part) if callable(v) else v
            files[s] = _npz(tmp / f"{s}.npz", part)
        return files
    return make


def _csv_case(mutate: Callable[[pd.DataFrame], pd.DataFrame], header: str | None = None):
    def make(tmp: Path) -> dict:
        path = _csv(tmp / "model.csv", generic_arrays())
        df = mutate(pd.read_csv(path))
        df.to_csv(path, index=False)
        if header is not None:  # rewrite the header line (duplicate names)
            lines = path.read_text().splitlines()
            path.write_text("\n".join([header] + lines[1:]) + "\n")
        return {"path": path}
    return make


def _dump_case(tmp: Path) -> dict:
    """An arcal dump (by its keys) that breaks the contract: labels beyond K."""
    arrays = {"logits": np.zeros((40, 3), np.float32), "labels": np.full(40, 3),
              "H": np.zeros((40, 0), np.float32), "V": np.zeros((40, 0), np.float32),
              "r_agg": np.full(40, np.nan, np.float32), "depth_var": np.full(40, np.nan, np.float32),
              "n_sources": np.zeros(0, np.int64), "consumers": np.zeros(0, str),
              "meta": np.array("{}")}
    return {"path": _npz(tmp / "test.npz", arrays)}


def _file(name: str, content: bytes | None):
    def make(tmp: Path) -> dict:
        path = tmp / name
        if content is not None:
            path.write_bytes(content)
        return {"path": path}
    return make


N = 800
#: (case id, builder, file the error must name ("model.npz", "calib.npz", ...), field)
CASES = [
    ("missing-file", _file("absent.npz", None), "absent.npz", "file"),
    ("parquet", _file("model.parquet", b"PAR1"), "model.parquet", "file"),
    ("unknown-format", _file("model.txt", b"x"), "model.txt", "file"),
    ("not-an-npz", _file("model.npz", b"not a zip"), "model.npz", "file"),
    ("no-scores", _edit(logits=None), "model.npz", "logits"),
    ("logits-and-probs", _edit(probs=_probs()), "model.npz", "logits"),
    ("logits-1d", _edit(logits=lambda a: a["logits"][:, 0]), "model.npz", "logits"),
    ("one-class", _edit(logits=lambda a: a["logits"][:, :1]), "model.npz", "logits"),
    ("logits-nan", _edit(logits=_nan_at("logits")), "model.npz", "logits"),
    ("probs-above-one", _edit(probs=_probs(scale=2.0), logits=None), "model.npz", "probs"),
    ("probs-not-summing", _edit(probs=_probs(bad_row=True), logits=None), "model.npz", "probs"),
    ("labels-missing", _edit(labels=None), "model.npz", "labels"),
    ("labels-length", _edit(labels=lambda a: a["labels"][:-1]), "model.npz", "labels"),
    ("labels-fractional", _edit(labels=lambda a: a["labels"] + 0.5), "model.npz", "labels"),
    ("labels-out-of-range", _edit(labels=lambda a: a["labels"] + 5), "model.npz", "labels"),
    ("labels-negative", _edit(labels=lambda a: a["labels"] - 1), "model.npz", "labels"),
    ("feature-length", _edit(router=lambda a: a["router"][:-3]), "model.npz", "router"),
    ("feature-nan", _edit(router=_nan_at("router")), "model.npz", "router"),
    ("feature-inf", _edit(depth=lambda a: np.where(np.arange(N) == 5, np.inf, a["depth"])),
     "model.npz", "depth"),
    ("feature-strings", _edit(router=lambda a: a["router"].astype(str)), "model.npz", "router"),
    ("feature-3d", _edit(router=lambda a: a["router"].reshape(N, 1, 1)), "model.npz", "router"),
    ("feature-reserved-name", _edit(conf=lambda a: a["router"]), "model.npz", "conf"),
    ("feature-bad-name", _edit(**{"2nd": lambda a: a["router"]}), "model.npz", "2nd"),
    ("matrix-nan", _edit(layers=_nan_at("layers", 11)), "model.npz", "layers"),
    ("matrix-rows", _edit(layers=lambda a: a["layers"][:-1]), "model.npz", "layers"),
    ("split-values", _edit(split=lambda a: np.where(a["split"] == "test", "tst", "calib")),
     "model.npz", "split"),
    ("split-one-side", _edit(split=np.full(N, "calib")), "model.npz", "split"),
    ("feature-constant-in-calib", _edit(router=_constant_in_calib), "model.npz", "router"),
    ("fewer-than-min-bin", _edit(**{k: (lambda a, k=k: a[k][:40]) for k in
                                    ("logits", "labels", "split", "router", "depth", "layers")}),
     "model.npz", "labels"),
    ("no-bin-reaches-min-bin", _edit(**{k: (lambda a, k=k: a[k][:200]) for k in
                                        ("labels", "split", "router", "depth", "layers")},
                                     logits=_spread_confidence(200)), "model.npz", "logits"),
    ("no-feature", _edit(router=None, depth=None), "model.npz", "features"),
    ("csv-duplicate-column", _csv_case(lambda d: d, header=None), "model.csv", "router"),
    ("csv-matrix-gap", _csv_case(lambda d: d.drop(columns=["layers[1]"])), "model.csv", "layers[j]"),
    ("csv-text-feature", _csv_case(lambda d: d.assign(router="high")), "model.csv", "router"),
    ("csv-feature-with-space", _csv_case(lambda d: d.rename(columns={"router": "my router"})),
     "model.csv", "my router"),
    ("csv-empty-cell", _csv_case(lambda d: d.assign(depth=d["depth"].where(d.index != 9))),
     "model.csv", "depth"),
    ("two-files-classes", _two(test_changes={"logits": lambda a: a["logits"][:, :4],
                                             "labels": lambda a: a["labels"] % 4}),
     "test.npz", "logits"),
    ("two-files-feature-missing", _two(test_changes={"depth": None}), "test.npz", "depth"),
    ("two-files-matrix-width", _two(test_changes={"layers": lambda a: a["layers"][:, :2]}),
     "test.npz", "layers"),
    ("two-files-split-column", _two(calib_changes={"split": lambda a: np.full(len(a["labels"]), "calib")}),
     "calib.npz", "split"),
    ("dump-contract", _dump_case, "test.npz", "dump contract"),
]


def _duplicate_header(case):
    """csv-duplicate-column: the generic CSV with its 'depth' column renamed 'router'."""
    name, make, where, field = case
    if name != "csv-duplicate-column":
        return case

    def dup(tmp: Path) -> dict:
        path = _csv(tmp / "model.csv", generic_arrays())
        lines = path.read_text().splitlines()
        lines[0] = lines[0].replace("depth", "router")
        path.write_text("\n".join(lines) + "\n")
        return {"path": path}
    return name, dup, where, field


CASES = [_duplicate_header(c) for c in CASES]


@pytest.mark.parametrize("name,make,where,field", CASES, ids=[c[0] for c in CASES])
def test_every_malformed_input_is_an_error_naming_the_file_and_the_field(
    name, make, where, field, tmp_path
) -> None:
    files = make(tmp_path)
    with pytest.raises(AuditInputError) as err:
        if "path" in files:
            load_audit(files["path"], min_bin=30)
        else:
            load_audit(calib=files["calib"], test=files["test"], min_bin=30)
    assert Path(err.value.path).name == where, str(err.value)
    assert err.value.field == field, str(err.value)
    assert str(err.value).startswith(f"{err.value.path}: {field}: "), str(err.value)


def test_asking_for_a_feature_the_file_lacks_names_it(tmp_path) -> None:
    path = _npz(tmp_path / "model.npz", generic_arrays())
    with pytest.raises(AuditInputError, match=r"model\.npz: gate: no such feature; the file has "
                                              r"router, depth"):
        load_audit(path, features=["gate"])
    with pytest.raises(AuditInputError, match=r"model\.npz: H: no such matrix"):
        load_audit(path, matrices=["H"])


def test_the_command_line_reports_a_malformed_input_and_exits_2(tmp_path) -> None:
    arrays = generic_arrays()
    arrays["labels"] = arrays["labels"] + 7
    path = _npz(tmp_path / "bad.npz", arrays)
    run = subprocess.run([sys.executable, "-m", "arcal.audit", str(path), "--out",
                          str(tmp_path / "out"), "--no-pdf"], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2
    assert f"{path}: labels: must lie in [0, 5) for 5 classes" in run.stderr
    assert not (tmp_path / "out").exists()  # nothing was run


# ----------------------------------------------------------------------------- valid inputs


def test_npz_and_csv_of_the_same_data_give_the_same_splits(tmp_path, generic) -> None:
    a = load_audit(_npz(tmp_path / "m.npz", generic))
    b = load_audit(_csv(tmp_path / "m.csv", generic))
    assert a.features == b.features == ["router", "depth"] and a.matrices == b.matrices == ["layers"]
    for s in ("calib", "test"):
        x, y = getattr(a, s), getattr(b, s)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_allclose(x.logits, y.logits, rtol=0, atol=1e-12)
        np.testing.assert_allclose(x.feature("router"), y.feature("router"), atol=1e-12)
        np.testing.assert_allclose(x.matrix("layers"), y.matrix("layers"), atol=1e-12)
    assert a.calib.n == a.test.n == 400
    np.testing.assert_array_equal(a.calib.labels, generic["labels"][generic["split"] == "calib"])


def test_probabilities_become_logits_with_the_same_softmax(tmp_path, generic) -> None:
    probs = softmax(generic["logits"])
    probs[0] = [1.0, 0.0, 0.0, 0.0, 0.0]  # an exact zero stays finite
    generic["logits"] = probs
    data = load_audit(_npz(tmp_path / "m.npz", {("probs" if k == "logits" else k): v
                                                  for k, v in generic.items()}))
    assert np.isfinite(data.calib.logits).all()
    np.testing.assert_allclose(data.calib.probs, probs[generic["split"] == "calib"], atol=1e-12)
    assert data.provenance["files"]["calib"]["source"] == "probs"


def test_without_a_split_column_the_halves_are_random_and_seeded(tmp_path, generic) -> None:
    generic.pop("split")
    path = _npz(tmp_path / "m.npz", generic)
    a, b, c = load_audit(path, split_seed=3), load_audit(path, split_seed=3), load_audit(path, split_seed=4)
    assert a.calib.n == a.test.n == 400 and "random halves" in a.provenance["split"]
    np.testing.assert_array_equal(a.test.feature("router"), b.test.feature("router"))
    assert not np.array_equal(a.test.feature("router"), c.test.feature("router"))
    both = np.sort(np.concatenate([a.calib.feature("router"), a.test.feature("router")]))
    np.testing.assert_array_equal(both, np.sort(generic["router"]))


def test_two_files_and_feature_selection(tmp_path, generic) -> None:
    split = generic.pop("split")
    files = {s: _npz(tmp_path / f"{s}.npz", {k: v[split == s] for k, v in generic.items()})
             for s in ("calib", "test")}
    data = load_audit(calib=files["calib"], test=files["test"], features=["depth"], matrices=[])
    assert data.features == ["depth"] and data.matrices == []
    assert data.calib.feature_names == ("depth",) and not data.calib.matrices
    assert data.provenance["split"] == "two files"


def test_arcal_dumps_default_to_what_the_workflow_audits(tiny_dumps) -> None:
    full = load_audit(calib=tiny_dumps["full"] / "calib.npz", test=tiny_dumps["full"] / "test.npz",
                      min_bin=10)
    assert full.features == ["r_agg", "depth_var"] and full.matrices == ["H"] and full.seed == 1
    base = load_audit(calib=tiny_dumps["baseline"] / "calib.npz",
                      test=tiny_dumps["baseline"] / "test.npz", min_bin=10)
    assert base.features == ["attn_entropy"] and base.matrices == ["A"]
    attn = load_audit(calib=tiny_dumps["full"] / "calib.npz", test=tiny_dumps["full"] / "test.npz",
                      features=["attn_entropy", "r_agg"], matrices=["A", "H"], min_bin=10)
    assert attn.test.feature_names == ("r_agg", "attn_entropy") and set(attn.test.matrices) == {"A"}
    assert attn.test.H is not None
