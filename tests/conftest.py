"""Fixtures shared by every test directory: the repository root and its configs."""

from pathlib import Path

import pytest
import yaml

from arcal.grid import deep_merge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


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
