"""Fixtures shared by every test directory: the repository root, its configs, a clean copy, an
empty cache for the C kernels."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from arcal.grid import deep_merge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def checkout():
    """Copy the repository's files (tracked, and untracked but not ignored) into a folder:
    what a fresh clone of the working tree would hold, without results/ or .venv/."""

    def copy(dest: Path) -> Path:
        files = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split("\0")
        for name in filter(None, files):
            src, dst = ROOT / name, dest / name
            if src.is_symlink():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(os.readlink(src), dst)
            elif src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        return dest

    return copy


@pytest.fixture(scope="session")
def load_config():
    """config.yaml with override files merged in, the way Snakemake merges --configfile."""

    def load(*overrides: str) -> dict:
        config = yaml.safe_load((ROOT / "config.yaml").read_text())
        for path in overrides:
            config = deep_merge(config, yaml.safe_load((ROOT / path).read_text()))
        return config

    return load


@pytest.fixture
def paper_config(load_config) -> dict:
    return load_config()


@pytest.fixture
def demo_config(load_config) -> dict:
    return load_config("profiles/demo/grid.yaml")


@pytest.fixture
def calibration_settings(load_config) -> dict:
    return load_config()["calibration"]


def _job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table that Snakemake prints before running (or dry-running) as
    {rule: count}, with the 'total' row."""
    table = output.split("Job stats:")[1]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif counts:
            break
    return counts


@pytest.fixture(scope="session")
def job_counts():
    """Parse Snakemake's 'Job stats' table: ``job_counts(stdout) -> {rule: count}``."""
    return _job_counts


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that start a real Slurm cluster last. Once they have installed Slurm's client
    and stopped its controller, every `snakemake` start waits about 9 s for `scontrol show config`
    (the Slurm executor plugin asks when Snakemake loads it; README, "Trying it locally"), so on
    a fresh machine each Snakemake run of the tests collected after them would pay that wait."""
    items.sort(key=lambda item: item.path.name == "test_local_cluster.py")  # stable: others keep order


@pytest.fixture
def kernel_cache(monkeypatch, tmp_path) -> Path:
    """An empty cache for arcal's C kernels (arcal.native), with none loaded in this process."""
    from arcal import native

    monkeypatch.setattr(native, "_loaded", {})
    cache = tmp_path / "kernels"
    monkeypatch.setenv("ARCAL_KERNEL_CACHE", str(cache))
    return cache


@pytest.fixture
def no_compiler(kernel_cache, monkeypatch, tmp_path) -> Path:
    """``kernel_cache``, with $CC naming a compiler that does not exist."""
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    return kernel_cache
