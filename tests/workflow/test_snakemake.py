"""The Snakemake workflow as users call it: lint, formatting, config validation, dry-runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from arcal import grid


ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry-run as {rule: count}."""
    table = output.split("Job stats:")[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif counts:
            break
    return counts


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_check_passes():
    files = ["Snakefile", *map(str, sorted((ROOT / "workflow/rules").glob("*.smk")))]
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_paper_grid_dry_run_through_slurm_profile(load_config):
    result = snakemake("-n", "--profile", "slurm")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    config = load_config()
    cells = grid.cells(config)
    routed = grid.routed_cells(config)
    assert counts["train"] == len(cells) == 56
    assert counts["dump"] == len(cells)
    assert counts["probes"] == counts["bandwidth"] == len(routed)
    assert counts["dump_ensemble"] == len(grid.temporal_cells(config))
    assert counts["paper"] == 1
    assert "finetune" in result.stdout and "checkpoint is not set" in result.stdout


def test_paper_grid_dry_run_shows_gpu_requests_of_training():
    result = snakemake("-n", "--profile", "slurm", "-p", "--until", "train")
    assert result.returncode == 0, result.stderr[-3000:]
    resources = re.findall(r"resources: (.*)", result.stdout)
    train = [r for r in resources if "gpu=1" in r]
    assert train, result.stdout[:2000]
    assert all("runtime=720" in r and "mem_mb=32000" in r for r in train)


def test_demo_grid_dry_run():
    result = snakemake("-n", "--profile", "profiles/demo")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["train"] == 18
    assert counts["probes"] == 12


def test_one_figure_target_needs_only_its_inputs():
    result = snakemake("-n", "--profile", "profiles/demo", "paper/figures/permutation_nulls.pdf")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["figure"] == 1
    assert "paper" not in counts and "table" not in counts
    assert "probes" not in counts and "bandwidth" not in counts


def test_bad_config_value_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"calibration": {"n_bins": 0}}))
    result = snakemake("-n", "--configfile", "config.yaml", str(bad))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "n_bins" in out and "minimum" in out


def test_unknown_config_key_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"epochz": 3}}))
    result = snakemake("-n", "--configfile", "config.yaml", str(bad))
    assert result.returncode != 0
    assert "epochz" in result.stdout + result.stderr
