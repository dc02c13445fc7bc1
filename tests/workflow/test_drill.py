"""The day-one drill of issue 13: each bad input or fault a new user meets, run through the real
entry point (Snakemake on a scratch copy of the repository, or the stage's command line).

Each case asserts the message (it names the key or file and what to do), that it comes early
(at DAG time, so a dry-run shows it, or in the `onstart` check before the first job), and that
no output is left behind as complete. The retraining cases run one cell of the test grid.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

BIN = Path(sys.executable).parent
CELL = "fashion-mnist/vit_test/full/seed0"
MODEL = f"results/train/{CELL}/model.pt"
# One cell of the test grid (it is also the temporal pilot's cell, so it keeps snapshots).
ONE_CELL = {
    "arms": {"main": {"cells": [["fashion-mnist", "vit_test"]], "variants": ["full"], "seeds": [0]}},
    "datasets": {"fashion-mnist": {"n_train": 300}},  # seconds per training run
}
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FASHION_MNIST.exists(), reason="the test grid needs Fashion-MNIST"),
]


def snakemake(repo: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=path or f"{BIN}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/test", "--cores", "2", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result.output = result.stdout + result.stderr
    return result


def override(repo: Path, *settings: dict) -> str:
    """A settings file merged over the test grid (the README's recipe); its path for
    --configfile."""
    merged: dict = {}
    for s in settings:
        merged = _merge(merged, s)
    path = repo / f"override{len(list(repo.glob('override*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(merged))
    return path.name


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def ran_no_job(result: subprocess.CompletedProcess, repo: Path) -> bool:
    """Nothing was executed: no job started and nothing was written under results/."""
    return "Select jobs to execute" not in result.output and not (repo / "results").exists()


@pytest.fixture
def repo(tmp_path, checkout) -> Path:
    return checkout(tmp_path / "repo")


# ----------------------------------------------------------------------------- DAG time

DAG_CASES = {
    "warmup-longer-than-training": (
        {"train": {"warmup_epochs": 5}},
        r"train\.warmup_epochs = 5: is longer than training, train\.epochs = 2; lower the warm-up",
    ),
    "min-lr-above-lr": (
        {"substrates": {"vit_test": {"train": {"min_lr": 0.1}}}},
        r"substrates\.vit_test\.train\.min_lr = 0\.1: is above the peak learning rate train\.lr",
    ),
    "n-train-larger-than-the-data": (
        {"datasets": {"fashion-mnist": {"n_train": 70000}}},
        r"datasets\.fashion-mnist\.n_train = 70000 but the train split holds 60000 images",
    ),
    "calib-and-test-larger-than-the-test-split": (
        {"datasets": {"fashion-mnist": {"n_calib": 6000, "n_test": 5000}}},
        r"datasets\.fashion-mnist\.n_calib \+ n_test = 6000 \+ 5000 .* holds 10000 images",
    ),
    "cuda-without-a-gpu-request": (
        {"train": {"device": "cuda"}},
        r"train\.device = 'cuda' but resources\.train\.gpu is 0, so the train jobs get no GPU",
    ),
    "ensemble-larger-than-the-snapshots": (
        {"temporal": {"ensemble_k": 3}},
        r"temporal\.ensemble_k = 3 but a run of 2 epochs \(train\.epochs\) keeps 2 snapshot",
    ),
    "temporal-cell-in-no-arm": (
        {"temporal": {"cells": [["fashion-mnist", "nowhere"]]}},
        r"temporal\.cells names \['fashion-mnist', 'nowhere'\], which is in no arm's cells",
    ),
    "yaml-float-without-a-dot": (
        {"train": {"lr": "1e-3"}},
        r"train\.lr = '1e-3' is a string where the schema wants number .* write floats with a "
        r"dot \(1\.0e-3",
    ),
}


@pytest.mark.parametrize("case", DAG_CASES)
def test_configuration_errors_stop_the_dry_run(repo, case) -> None:
    settings, message = DAG_CASES[case]
    result = snakemake(repo, "-n", "--configfile", override(repo, settings))
    assert result.returncode != 0
    assert re.search(message, result.output), result.output[-3000:]
    assert "Job stats" not in result.output and not (repo / "results").exists()


def test_an_unknown_grid_lists_the_grids(repo) -> None:
    result = snakemake(repo, "-n", "--config", "grid=tset")
    assert result.returncode != 0
    assert (
        "grid = 'tset': there is no profiles/tset/grid.yaml; choose paper (config.yaml "
        "alone) or one of demo, test"
    ) in result.output


def test_nested_config_values_get_a_hint_not_a_bare_type_error(repo) -> None:
    result = snakemake(repo, "-n", "--config", "grid=test", "calibration={n_bins: 10}")
    assert result.returncode != 0
    assert re.search(
        r"calibration\.n_bins = '10' is a string .* Values nested in --config .* "
        r"put the override in a YAML file and pass it with --configfile",
        result.output,
    )


def test_config_on_the_command_line_cannot_drop_the_profiles_grid(repo) -> None:
    """--config replaces the profile's `config:` (its grid): refused rather than planning the
    paper grid."""
    result = snakemake(repo, "-n", "--config", "split_seed=3")
    assert result.returncode != 0
    assert "--config split_seed=... replaces the profile's `config:` entry" in result.output
    assert "pass it with --configfile" in result.output


def test_the_override_recipe_merges_over_the_profiles_grid(repo) -> None:
    """`--profile profiles/test --configfile extra.yaml`: the test grid with the override, not
    the paper grid."""
    result = snakemake(repo, "-n", "--forceall", "--configfile", override(repo, ONE_CELL))
    assert result.returncode == 0, result.output[-3000:]
    assert re.search(r"^train\s+1$", result.output, re.M)
    assert "arm 'finetune' is skipped: disabled" in result.output  # the test grid's arms
    with_grid = snakemake(repo, "-n", "--forceall", "--config", "grid=test", "split_seed=3")
    assert with_grid.returncode == 0 and re.search(r"^train\s+12$", with_grid.output, re.M)


def test_a_disabled_temporal_pilot_is_not_checked_and_a_dropped_cell_is_named(repo) -> None:
    disabled = snakemake(
        repo,
        "-n",
        "--configfile",
        override(repo, {"temporal": {"enabled": False, "cells": [["fashion-mnist", "nowhere"]]}}),
    )
    assert disabled.returncode == 0, disabled.output[-3000:]
    dropped = snakemake(
        repo,
        "-n",
        "--configfile",
        override(
            repo,
            {
                "substrates": {"vit_other": {"arch": "vit_tiny"}},
                "arms": {
                    "other": {
                        "enabled": False,
                        "cells": [["fashion-mnist", "vit_other"]],
                        "variants": ["full"],
                        "seeds": [0],
                    }
                },
                "temporal": {"cells": [["fashion-mnist", "vit_other"]]},
            },
        ),
    )
    assert dropped.returncode == 0, dropped.output[-3000:]
    assert (
        "temporal.cells names ['fashion-mnist', 'vit_other'], but its arm(s) other are left "
        "out (disabled in the config"
    ) in dropped.output


# ----------------------------------------------------------------------------- onstart


def _stray_label_npz(path: Path) -> Path:
    x = np.zeros((60, 8, 8), np.uint8)
    y = np.arange(60) % 4
    y[7] = 4  # one stray id: without the check, a 5-class model
    np.savez(path, x_train=x, y_train=y, x_test=x[:20], y_test=np.arange(20) % 4)
    return path


ONSTART_CASES = {
    "unknown-arch": (
        {"substrates": {"vit_test": {"arch": "vit_tinyy"}}},
        r"substrates\.vit_test\.arch = 'vit_tinyy' is not a registered substrate \(registered: "
        r".*vit_tiny.*\); fix the name",
    ),
    "bad-model-key": (
        {"substrates": {"vit_test": {"model": {"embed_dimm": 64}}}},
        r"substrates\.vit_test \(arch vit_tiny, model: \{'embed_dimm': 64\}\) .* cannot be built "
        r"\(TypeError: .*unexpected keyword argument 'embed_dimm'\); fix substrates\.vit_test\.model",
    ),
    "cuda-without-cuda": (
        {"train": {"device": "cuda"}, "resources": {"train": {"gpu": 1}, "dump": {"gpu": 1}}},
        r"device: cuda but no CUDA device is visible here .* use device: auto",
    ),
    "missing-data": (
        {"datasets": {"fashion-mnist": {"root": "/nonexistent/fmnist"}}},
        r"datasets\.fashion-mnist: the Fashion-MNIST IDX files are not in /nonexistent/fmnist; "
        r"install the data there, point datasets\.fashion-mnist\.root at it",
    ),
    "npz-stray-label": (
        "npz",
        r"datasets\.mine: npz: .*mine\.npz has no `classes` array, so its classes are the ids "
        r"0\.\.4, but not every id occurs in both splits: 4 \(1 in y_train, 0 in y_test\)",
    ),
}


@pytest.mark.parametrize("case", ONSTART_CASES)
def test_problems_of_the_jobs_to_run_stop_the_run_before_the_first_job(repo, case) -> None:
    if torch.cuda.is_available() and case == "cuda-without-cuda":
        pytest.skip("a CUDA device is visible here")
    settings, message = ONSTART_CASES[case]
    target = MODEL
    if settings == "npz":
        _stray_label_npz(repo / "mine.npz")
        settings = {
            "datasets": {"mine": {"kind": "npz", "root": "mine.npz", "n_calib": 5, "n_test": 5}},
            "arms": {"main": {"cells": [["mine", "vit_test"]]}},
            "temporal": {"enabled": False},
        }
        target = MODEL.replace("fashion-mnist", "mine")
    result = snakemake(repo, target, "--configfile", override(repo, ONE_CELL, settings))
    assert result.returncode != 0
    assert "arcal: the run has" in result.output
    assert re.search(message, result.output), result.output[-3000:]
    assert ran_no_job(result, repo)


def test_missing_latex_stops_a_paper_build_before_any_training(repo, tmp_path) -> None:
    tools = tmp_path / "bin"  # PATH without latexmk and pdflatex
    tools.mkdir()
    for entry in os.scandir("/usr/bin"):
        if entry.name not in ("latexmk", "pdflatex"):
            (tools / entry.name).symlink_to(entry.path)
    result = snakemake(
        repo, "--configfile", override(repo, ONE_CELL), path=f"{BIN}{os.pathsep}{tools}"
    )
    assert result.returncode != 0
    assert re.search(
        r"the paper is built with LaTeX but latexmk and pdflatex are not on PATH; "
        r"install TeX Live",
        result.output,
    ), result.output[-3000:]
    assert ran_no_job(result, repo)


def test_a_missing_c_compiler_stops_the_run_before_any_training(repo, no_compiler) -> None:
    """The permutation tests' kernel is built before the first job, not after the training."""
    result = snakemake(repo, "--configfile", override(repo, ONE_CELL))
    assert result.returncode != 0
    assert re.search(
        r"the permutation tests need their C kernel, and could not build permutation_null\.c",
        result.output,
    ), result.output[-3000:]
    assert "Install a C compiler" in result.output
    assert ran_no_job(result, repo)


def test_analysis_command_lines_read_settings_in_the_configs_shape(repo, tmp_path) -> None:
    """Every stage CLI reads --settings like config.yaml; a bare block is named, not a KeyError."""
    from arcal.io import DUMP_KEYS, atomic_save_npz

    rng = np.random.default_rng(0)
    n, layers = 400, 4
    H = rng.uniform(0.2, 1.0, (n, layers)).astype(np.float32)
    arrays = dict(
        logits=rng.normal(size=(n, 3)).astype(np.float32),
        labels=rng.integers(3, size=n),
        H=H,
        V=H,
        r_agg=H.mean(1),
        depth_var=H.var(1),
        n_sources=np.arange(2, 2 + layers),
        consumers=np.array([f"c{i}" for i in range(layers)]),
        meta=np.array("{}"),
    )
    assert set(arrays) == set(DUMP_KEYS)
    atomic_save_npz(tmp_path / "test.npz", **arrays)
    config = yaml.safe_load((repo / "config.yaml").read_text())
    config["calibration"]["n_perm"] = 99
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "bare.yaml").write_text(yaml.safe_dump(config["calibration"]))
    command = [
        str(BIN / "arcal"),
        "permutation",
        str(tmp_path / "test.npz"),
        "--null-out",
        str(tmp_path / "null.npz"),
        "--out",
        str(tmp_path / "p.csv"),
    ]
    good = subprocess.run(
        [*command, "--settings", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert good.returncode == 0, good.stderr[-3000:]
    bad = subprocess.run(
        [*command, "--settings", str(tmp_path / "bare.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert (
        "bare.yaml lacks the config block(s) calibration: it is read like config.yaml" in bad.stderr
    )


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def finished_cell(tmp_path_factory, checkout) -> Path:
    """One cell of the test grid trained to the end (with the rule's threads set to 2)."""
    repo = checkout(tmp_path_factory.mktemp("finished") / "repo")
    result = snakemake(
        repo, MODEL, "--configfile", override(repo, ONE_CELL), "--set-threads", "train=2"
    )
    assert result.returncode == 0, result.output[-3000:]
    return repo


def copy_of(repo: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(repo, tmp_path / "repo", symlinks=True))


def test_a_finished_run_keeps_its_snapshots_and_no_checkpoint(finished_cell) -> None:
    run = finished_cell / "results/train" / CELL
    assert not (run / "checkpoint.pt").exists() and not (run / "snapshots.partial").exists()
    record = torch.load(run / "model.pt", weights_only=False)
    assert record["snapshots"] == [1, 2]
    for epoch in (1, 2):
        assert (
            torch.load(run / f"snapshots/epoch{epoch}.pt", weights_only=False)["key"]
            == record["key"]
        )
    log = (finished_cell / "results/logs/train" / f"{CELL}.log").read_text()
    assert ", 2 threads," in log  # --set-threads train=2 reaches training


def test_forcerun_train_retrains(finished_cell, tmp_path) -> None:
    repo = copy_of(finished_cell, tmp_path)
    result = snakemake(repo, MODEL, "--configfile", "override0.yaml", "--forcerun", "train")
    assert result.returncode == 0, result.output[-3000:]
    log = (repo / "results/logs/train" / f"{CELL}.log").read_text()  # the forced run's
    assert log.count("==== rule train") == 1 and "resuming" not in log
    assert len(re.findall(r": epoch \d, train_loss", log)) == 2  # both epochs trained again


def test_a_changed_learning_rate_retrains_without_hand_deletion(finished_cell, tmp_path) -> None:
    repo = copy_of(finished_cell, tmp_path)
    lr = override(repo, ONE_CELL, {"train": {"lr": 1.0e-3}})
    result = snakemake(repo, MODEL, "--configfile", lr)
    assert result.returncode == 0, result.output[-3000:]
    assert re.search(r"^train\s+1$", result.output, re.M)  # Snakemake saw the change
    record = torch.load(repo / MODEL, weights_only=False)
    assert record["train_config"]["lr"] == 1.0e-3


def test_an_edited_manifest_reruns_training(finished_cell, tmp_path) -> None:
    repo = copy_of(finished_cell, tmp_path)
    manifest = repo / "results/data/fashion-mnist/manifest.json"
    manifest.write_text(manifest.read_text().replace('"T-shirt/top"', '"Tee"'))
    result = snakemake(repo, MODEL, "-n", "--configfile", "override0.yaml")
    assert result.returncode == 0 and re.search(r"^train\s+1$", result.output, re.M)
    assert "Updated input files: results/data/fashion-mnist/manifest.json" in result.output


@pytest.mark.parametrize("name", ["splits.npz", "manifest.json"])
def test_a_corrupt_splits_file_is_named_before_training(finished_cell, tmp_path, name) -> None:
    repo = copy_of(finished_cell, tmp_path)
    path = repo / "results/data/fashion-mnist" / name
    path.write_bytes(path.read_bytes()[:50])
    result = snakemake(repo, MODEL, "--configfile", "override0.yaml", "--forcerun", "train")
    assert result.returncode != 0
    what = "splits file" if name == "splits.npz" else "manifest"
    assert re.search(
        rf"{what} results/data/fashion-mnist/{re.escape(name)} is unreadable .*; "
        r"delete results/data/fashion-mnist and re-run the data stage",
        result.output,
    )
    assert "Select jobs to execute" not in result.output
    assert (repo / MODEL).exists()  # nothing was rerun, so nothing was removed


def test_a_failed_job_logs_its_traceback_and_a_retry_appends(repo) -> None:
    result = snakemake(
        repo,
        MODEL,
        "--retries",
        "1",
        "--configfile",
        override(repo, ONE_CELL, {"train": {"lr": 1.0e30, "warmup_epochs": 0}}),
    )
    assert result.returncode != 0
    log = (repo / "results/logs/train" / f"{CELL}.log").read_text()
    # Snakemake deletes the log before the retry; the first attempt's is restored above it
    assert log.count("==== rule train (dataset=fashion-mnist") == 2
    assert log.count("Traceback (most recent call last)") == 2
    assert log.count("NonFiniteLossError: ") >= 2 and "lower the learning rate" in log
    assert not (repo / MODEL).exists()
