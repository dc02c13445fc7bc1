"""How arcal is installed and started: pinned conda environments, setup.sh's choice of Python,
the profiles and minimum Snakemake version, and the `arcal` console script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PINS = dict(
    re.fullmatch(r"([A-Za-z0-9_.-]+)==(.+)", dep).groups()
    for dep in PYPROJECT["project"]["dependencies"]
)
ENVS = sorted((ROOT / "envs").glob("*.yaml"))


def _pip_entries(env: Path) -> list[str]:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return [e for d in deps if isinstance(d, dict) for e in d.get("pip", [])]


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.stem)
def test_conda_envs_pin_what_pyproject_pins_and_name_no_paths(env: Path) -> None:
    entries = _pip_entries(env)
    for entry in entries:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(.+)", entry)
        assert (
            match
        ), f"{env.name}: {entry!r} is not a name==version pin (a path resolves inside .snakemake/conda/)"
        name, version = match.groups()
        assert (
            PINS.get(name) == version
        ), f"{env.name}: {name}=={version}, pyproject.toml pins {PINS.get(name)}"
    if entries:  # a Python environment: arcal itself comes from its post-deploy script
        script = env.with_suffix(".post-deploy.sh").read_text()
        assert '--editable "${ARCAL_SOURCE:?' in script
        python = [
            d
            for d in yaml.safe_load(env.read_text())["dependencies"]
            if isinstance(d, str) and d.startswith("python=")
        ]
        assert python and _supported(python[0].split("=")[1]), python


def test_the_snakefile_tells_the_post_deploy_scripts_where_the_package_is() -> None:
    assert "os.environ.update(ARCAL_SOURCE=workflow.basedir)" in (ROOT / "Snakefile").read_text()


def test_a_post_deploy_script_installs_the_package(tmp_path, checkout) -> None:
    """What Snakemake runs in a new conda environment, here in a bare virtual environment."""
    repo = checkout(tmp_path / "repo")
    venv.create(tmp_path / "env", with_pip=True)
    env = dict(
        os.environ,
        PATH=f"{tmp_path / 'env/bin'}{os.pathsep}{os.environ['PATH']}",
        ARCAL_SOURCE=str(repo),
    )
    run = subprocess.run(
        ["bash", str(repo / "envs/analysis.post-deploy.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    where = subprocess.run(
        [str(tmp_path / "env/bin/python"), "-c", "import arcal; print(arcal.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(where.strip()) == repo / "workflow/arcal/__init__.py"
    unset = subprocess.run(
        ["bash", str(repo / "envs/analysis.post-deploy.sh")],
        env={k: v for k, v in env.items() if k != "ARCAL_SOURCE"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unset.returncode != 0 and "set by the Snakefile" in unset.stderr


def _supported(version: str) -> bool:
    low, high = re.fullmatch(
        r">=(3\.\d+),<(3\.\d+)", PYPROJECT["project"]["requires-python"]
    ).groups()
    minor = lambda v: int(v.split(".")[1])  # noqa: E731
    return minor(low) <= minor(version) < minor(high)


def test_setup_sh_knows_the_python_versions_of_pyproject() -> None:
    listed = (
        re.search(r"^versions=\((.*)\)$", (ROOT / "setup.sh").read_text(), re.M).group(1).split()
    )
    low, high = re.fullmatch(
        r">=3\.(\d+),<3\.(\d+)", PYPROJECT["project"]["requires-python"]
    ).groups()
    assert sorted(listed) == [f"3.{m}" for m in range(int(low), int(high))]


def test_setup_sh_refuses_an_unsupported_python_and_names_the_versions(tmp_path, checkout) -> None:
    repo = checkout(tmp_path / "repo")
    fake = tmp_path / "python3.9"  # an interpreter of a version arcal does not support
    fake.write_text('#!/bin/sh\n[ "$1" = --version ] && echo "Python 3.9.18" && exit 0\nexit 1\n')
    fake.chmod(0o755)
    run = subprocess.run(
        ["./setup.sh"],
        cwd=repo,
        env=dict(os.environ, PYTHON=str(fake)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert f"setup: arcal needs Python 3.13 3.12 3.11; found: {fake}: Python 3.9.18;" in run.stderr
    assert "PYTHON=/path/to/python3.12 ./setup.sh" in run.stderr
    assert not (repo / ".venv").exists()


def test_profiles_are_found_by_every_snakemake_9_and_the_minimum_version_is_pinned_or_older() -> (
    None
):
    """`config.yaml` is the profile file every Snakemake finds (`profile.yaml` only 9.19+), so an
    older Snakemake gets to the Snakefile's min_version check."""
    for profile in (ROOT / "profiles").iterdir():
        if profile.is_dir():
            assert [p.name for p in profile.glob("*.yaml") if p.name != "grid.yaml"] == [
                "config.yaml"
            ]
    minimum = re.search(r'min_version\("([\d.]+)"\)', (ROOT / "Snakefile").read_text()).group(1)
    pinned = PINS["snakemake"]
    assert tuple(map(int, minimum.split("."))) <= tuple(map(int, pinned.split(".")))


def test_the_arcal_command_lists_and_runs_the_stage_command_lines() -> None:
    from arcal.__main__ import STAGES

    listing = subprocess.run(
        [str(BIN / "arcal"), "--help"], capture_output=True, text=True, check=True
    )
    for name in STAGES:
        assert re.search(rf"^  {name}\s+\w", listing.stdout, re.M), name
    train = subprocess.run([str(BIN / "arcal"), "train", "--help"], capture_output=True, text=True)
    assert train.returncode == 0 and "--out" in train.stdout
    unknown = subprocess.run([str(BIN / "arcal"), "trian"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown stage 'trian'" in unknown.stderr
    import importlib

    for module, _ in STAGES.values():
        assert callable(importlib.import_module(module).main), module
