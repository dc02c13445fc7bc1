"""arcal.checks as functions: the checks of the drill (tests/workflow/test_drill.py) without
Snakemake, and the policy for jobs that run on cluster nodes (warnings, not errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from arcal import checks, data


@pytest.fixture
def test_config(load_config) -> dict:
    return load_config("profiles/test/grid.yaml")


def test_the_shipped_grids_have_no_problems(load_config) -> None:
    for overrides in ((), ("profiles/demo/grid.yaml",), ("profiles/test/grid.yaml",)):
        assert checks.config_problems(load_config(*overrides)) == []


def test_dag_time_checks_do_not_import_torch() -> None:
    """The Snakefile runs them on every invocation: they must stay cheap."""
    code = (
        "import sys, yaml; from arcal import checks; "
        "checks.config_problems(yaml.safe_load(open('config.yaml'))); "
        "sys.exit('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2])
    assert result.returncode == 0


def test_a_problem_names_the_key_its_value_comes_from(test_config) -> None:
    test_config["datasets"]["fashion-mnist"]["train"]["warmup_epochs"] = 9
    (problem,) = checks.config_problems(test_config)
    assert problem.startswith(
        "datasets.fashion-mnist.train.warmup_epochs = 9: is longer than training, "
        "train.epochs = 2; lower the warm-up or raise epochs"
    )
    assert "(cells: fashion-mnist/swin_test/baseline/seed0" in problem and "and 9 more)" in problem


def test_sizes_come_from_the_data_files_or_are_known(tmp_path) -> None:
    assert checks.dataset_sizes({}, "cifar100") == (50000, 10000)
    assert checks.dataset_sizes({"root": str(tmp_path)}, "fashion-mnist") is None  # no files
    x = np.zeros((7, 5, 5, 3), np.uint8)
    np.savez(
        tmp_path / "d.npz",
        x_train=x,
        y_train=np.zeros(7, int),
        x_test=x[:3],
        y_test=np.zeros(3, int),
    )
    assert checks.dataset_sizes({"kind": "npz", "root": str(tmp_path / "d.npz")}, "d") == (7, 3)
    assert checks._geometry(
        {"datasets": {"d": {"kind": "npz", "root": str(tmp_path / "d.npz")}}}, "d"
    ) == (5, 3, 2)


def test_the_fashion_mnist_folder_matches_the_loaders() -> None:
    assert checks.FASHION_MNIST_DEBIAN == data.FASHION_MNIST_DEBIAN


def test_cluster_jobs_get_warnings_local_jobs_errors(test_config) -> None:
    """A login node has no GPU and may not see the data the compute nodes see."""
    test_config["train"]["device"] = "cuda"
    test_config["datasets"]["fashion-mnist"]["root"] = "/nonexistent"
    rules = {"splits", "train"}
    local = checks.environment_problems(test_config, rules, set(), local=True)
    cluster = checks.environment_problems(test_config, rules, set(), local=False)
    missing = [p for p in local.errors if "IDX files are not in /nonexistent" in p]
    assert missing and missing[0] in cluster.warnings and not cluster.errors
    if not torch.cuda.is_available():
        assert any("no CUDA device is visible" in p for p in local.errors)
        assert any("no CUDA device is visible" in p for p in cluster.warnings)


def test_only_what_runs_is_checked(test_config, monkeypatch) -> None:
    test_config["substrates"]["vit_test"]["arch"] = "nope"
    monkeypatch.setattr(checks.shutil, "which", lambda tool: None)  # no LaTeX
    assert checks.environment_problems(test_config, {"figure"}, set(), local=True).errors == []
    paper = checks.environment_problems(test_config, {"paper"}, set(), local=True).errors
    assert len(paper) == 1 and "latexmk and pdflatex are not on PATH" in paper[0]
    train = checks.environment_problems(test_config, {"train"}, set(), local=True).errors
    assert any(
        "substrates.vit_test.arch = 'nope' is not a registered substrate" in p for p in train
    )


def test_a_missing_compiler_stops_permutation_jobs_before_they_start(
    test_config, monkeypatch, no_compiler
) -> None:
    """The permutation null's C kernel is built before the first job; without a compiler that is
    an error here, and a warning for cluster jobs or conda environments (they bring their own)."""
    local = checks.environment_problems(test_config, {"planted"}, set(), local=True)
    cluster = checks.environment_problems(test_config, {"permutation"}, set(), local=False)
    conda = checks.environment_problems(test_config, {"audit"}, set(), local=True, conda=True)
    unrelated = checks.environment_problems(test_config, {"figure"}, set(), local=True)
    (problem,) = local.errors
    assert problem.startswith("the permutation tests need their C kernel, and could not build")
    assert "Install a C compiler" in problem
    assert cluster.warnings == conda.warnings == [problem]
    assert not cluster.errors and not conda.errors and unrelated == checks.Findings([], [])
    monkeypatch.delenv("CC")
    assert checks.environment_problems(test_config, {"planted"}, set(), local=True).errors == []


def test_every_cells_training_settings_meet_the_training_jobs_rules_at_dag_time(test_config) -> None:
    """The rules TrainConfig.validate applies in the job, where the schema cannot (it allows
    label_smoothing 1), reported with the config key before any job starts."""
    test_config["substrates"]["vit_test"]["train"] = {"label_smoothing": 1.0}
    (problem,) = checks.config_problems(test_config)
    assert problem.startswith(
        "substrates.vit_test.train.label_smoothing = 1.0: must lie in [0, 1) "
        "(cells: fashion-mnist/vit_test/baseline/seed0"
    )


def test_a_model_that_cannot_be_built_is_named_with_its_settings(test_config) -> None:
    test_config["substrates"]["swin_test"]["model"] = {"depths": [2, 2, 2]}
    problems = checks.model_problems(test_config)
    assert len(problems) == 1, problems
    assert problems[0].startswith(
        "substrates.swin_test (arch swin_demo, model: {'depths': [2, 2, 2]}) on "
        "fashion-mnist (28x28x1) cannot be built (IndexError"
    )
    assert problems[0].endswith(
        "(cells: fashion-mnist/swin_test/baseline/seed0, "
        "fashion-mnist/swin_test/baseline/seed1, "
        "fashion-mnist/swin_test/block/seed0 and 3 more)"
    )


def test_grid_choice() -> None:
    checks.check_grid_choice({})
    checks.check_grid_choice({"grid": "test", "split_seed": 1})
    with pytest.raises(checks.ConfigError, match=r"--config split_seed=\.\.\. replaces"):
        checks.check_grid_choice({"split_seed": 1})
