"""bench/gpu_check.sh: its CPU dry run (the GPU check's code path, tiny sizes) and its JSON.

The dry run runs as on the bare GPU machine: snakemake and relplot are made unimportable, and the
repository's code comes from PYTHONPATH=workflow, not from an installed package.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
PHASES = ["benchmark", "capture", "training_eager", "training_compiled", "benchmark_compiled"]


def run_check(tmp: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    blocked = tmp / "blocked"
    for name in ("snakemake", "relplot"):
        (blocked / name).mkdir(parents=True, exist_ok=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(blocked)}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    tmp = tmp_path_factory.mktemp("gpu-check")
    proc = run_check(tmp, "--dry-run", "--out", str(tmp / "gpu.json"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp / "gpu.json").read_text()), proc.stdout


def test_dry_run_runs_every_phase_and_passes_its_checks(dry_run) -> None:
    r, stdout = dry_run
    assert r["dry_run"] is True and r["compile_backend"] == "eager" and r["torch"]
    assert r["phases_done"] == PHASES and r["skipped"] == {}
    assert r["data"] == {"source": "synthetic", "root": None}
    assert r["checks"] == {"loss_finite": True, "dump_float32": True, "accuracy_above_chance": True,
                           "compile_on_and_off": True, "real_data": False, "no_forbidden_imports": True}
    assert r["ok"] is True and r["forbidden_imports"] == []
    assert r["peak_memory_gib"] is None  # no GPU
    assert stdout.strip().splitlines()[-1].startswith("device=") and " ok=True " in stdout


def test_dry_run_trains_and_dumps_with_compile_off_and_on(dry_run) -> None:
    r, _ = dry_run
    eager, compiled = r["training_eager"], r["training_compiled"]
    assert (eager["compile"], compiled["compile"]) == (False, True)
    for t in (eager, compiled):
        assert t["dump_logits_dtype"] == "float32" and t["dump_max_abs_error_vs_float64"] < 1e-4
        assert t["loss_finite"] and len(t["train_loss"]) == t["epochs"] == 2
        assert all(math.isfinite(v) for v in t["train_loss"]) and t["train_loss"][-1] < t["train_loss"][0]
        assert t["accuracy"] > 2 * t["chance"] == 0.2 and t["n_test"] == 256
    # Dynamo's capture without code generation computes the same function: the same run
    assert compiled["train_loss"] == eager["train_loss"]


def test_dry_run_benchmark_overheads_and_targets(dry_run) -> None:
    r, _ = dry_run
    eager, compiled = r["benchmark"], r["benchmark_compiled"]
    assert (eager["compile"], compiled["compile"]) == (False, True) and eager["smoke"]
    assert set(eager["runs"]) == {f"{s}/{v}" for s in ("deit_s", "swin_t") for v in ("baseline", "block", "full")}
    assert set(compiled["runs"]) == {"deit_s/baseline", "deit_s/block", "deit_s/full"}
    for run in [*eager["runs"].values(), *compiled["runs"].values()]:
        assert run["step_s"] > 0 and run["images_per_s"] > 0 and 0 < run["mfu"] and run["flops_per_step"] > 0
        assert run["peak_memory_gib"] is None
    assert set(r["overhead"]) == {"block_ratio", "full_ratio", "capture_ratio", "compiled_block_ratio",
                                  "compiled_full_ratio"}
    assert all(v > 0 for v in r["overhead"].values())
    assert r["overhead"]["compiled_block_ratio"] == compiled["block_ratio"]
    assert set(r["targets"]) == {"deit_s_block_300ep_min", "block_ratio", "full_ratio"}
    for key, t in r["targets"].items():
        assert t["from"] == "compiled" and t["value"] == compiled[key] and t["met"] == (t["value"] <= t["limit"])
    assert r["capture"]["capture_ratio"] == r["overhead"]["capture_ratio"]


def test_without_a_gpu_the_real_check_refuses_clearly(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the real check would run")
    proc = run_check(tmp_path, "--out", str(tmp_path / "gpu.json"), timeout=120)
    assert proc.returncode == 1 and "no CUDA device is visible; use --dry-run" in proc.stderr
    assert not (tmp_path / "gpu.json").exists()


def test_gpu_check_passes_shellcheck() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "shellcheck"), str(SCRIPT)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout
