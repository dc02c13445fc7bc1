"""The Snakemake workflow as users call it: lint, formatting, config validation, dry-runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from arcal import grid


ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [str(BIN / "snakemake"), *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def dry_run(*args: str) -> subprocess.CompletedProcess:
    """A dry-run of every job the targets need, whatever results/ already holds."""
    return snakemake("-n", "--forceall", *args)


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_check_passes():
    files = ["Snakefile", *map(str, sorted((ROOT / "workflow/rules").glob("*.smk")))]
    result = subprocess.run(
        [str(BIN / "snakefmt"), "--check", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def paper_dry_run() -> subprocess.CompletedProcess:
    result = dry_run("--profile", "slurm")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_paper_grid_dry_run_through_slurm_profile(paper_dry_run, load_config, job_counts):
    result = paper_dry_run
    counts = job_counts(result.stdout)
    config = load_config()
    cells = grid.cells(config)
    routed = grid.routed_cells(config)
    assert counts["train"] == len(cells) == 56
    temporal = grid.temporal_cells(config)
    assert counts["dump_with_ensemble"] == len(temporal) > 0  # one dump job per cell
    assert counts["dump"] == len(cells) - len(temporal)
    assert counts["probes"] == counts["bandwidth"] == len(routed)
    assert counts["paper"] == 1
    assert "finetune" in result.stdout and "checkpoint is not set" in result.stdout


def dry_run_resources(output: str) -> dict[str, dict[str, str]]:
    """Each rule's 'resources:' line of a dry-run as {rule: {name: value}}; every job of a rule
    requests the same here (from config.yaml), so the last job's line stands for the rule."""
    resources, rule = {}, None
    for line in output.splitlines():
        if m := re.match(r"(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.match(r"\s+resources: (.*)", line)) and rule:
            resources[rule] = dict(kv.split("=", 1) for kv in m.group(1).split(", "))
    return resources


def test_paper_grid_dry_run_shows_each_rules_slurm_requests(paper_dry_run, load_config):
    requests = dry_run_resources(paper_dry_run.stdout)
    profile = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
    wanted = load_config()["resources"]
    gpu_rules = {"train": "train", "dump": "dump", "dump_with_ensemble": "dump"}
    for rule, got in requests.items():
        group = gpu_rules.get(rule)
        if group:  # --gpus, --cpus-per-task, --mem, -t on the GPU partition
            assert got["slurm_partition"] == profile["set-resources"][rule]["slurm_partition"]
            for key in ("gpu", "cpus_per_task", "mem_mb", "runtime"):
                assert got[key] == str(wanted[group][key]), (rule, key)
        else:
            assert "gpu" not in got, rule
            assert got["slurm_partition"] == profile["default-resources"]["slurm_partition"]
        assert got["slurm_account"] == profile["default-resources"]["slurm_account"]
    for rule in ("metrics", "probes", "permutation", "bandwidth", "planted"):
        assert requests[rule]["mem_mb"] == str(wanted["analysis"]["mem_mb"])
        assert requests[rule]["runtime"] == str(wanted["analysis"]["runtime"])
    assert set(gpu_rules) <= set(requests)


def test_demo_grid_dry_run(job_counts):
    result = dry_run("--profile", "profiles/demo")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["train"] == 18
    assert counts["dump"] == counts["dump_with_ensemble"] == 9  # vit_demo is the temporal pilot
    assert counts["probes"] == 12


def test_one_figure_target_needs_only_its_inputs(job_counts):
    result = dry_run("--profile", "profiles/demo", "paper/figures/permutation_nulls.pdf")
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


def test_readme_lists_every_figure_and_table_target():
    from arcal.report.figures import FIGURES
    from arcal.report.tables import TABLES

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Regenerating one figure or table")[1].split("\n## ")[0]
    missing = [f"paper/figures/{n}.pdf" for n in FIGURES if f"`paper/figures/{n}.pdf`" not in section]
    missing += [f"paper/tables/{n}.tex" for n in TABLES if f"{n}.tex`" not in section]
    assert not missing, f"README's target table lacks {missing}"
