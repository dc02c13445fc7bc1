"""The test grid end to end, twice from an empty results/: the PDF is built, every stage's
outputs exist, and the two runs give byte-identical tables and figures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, checkout):
    runs = []
    for name in ("first", "second"):
        repo = checkout(tmp_path_factory.mktemp(name))
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        result = subprocess.run(
            [str(BIN / "snakemake"), "--profile", "profiles/test", "--cores", "2"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=1500,
        )
        assert result.returncode == 0, result.stderr[-6000:]
        (repo / "snakemake.out").write_text(result.stdout + result.stderr)
        runs.append(repo)
    return runs


def test_test_grid_builds_the_paper(two_runs):
    repo = two_runs[0]
    pdf = repo / "paper/build/main.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    for stage in ("train", "dumps", "metrics", "probes", "permutation", "bandwidth", "planted"):
        assert any((repo / "results" / stage).rglob("*.*")), stage
    logs = list((repo / "results/logs/train").rglob("*.log"))
    assert logs and all(log.stat().st_size > 0 for log in logs)
    assert f"arcal: the paper is {pdf.resolve()}" in (repo / "snakemake.out").read_text()
    for run in (repo / "results/train").glob("*/*/*/seed*"):  # finished runs keep no optimiser
        assert not (run / "checkpoint.pt").exists() and (run / "snapshots").is_dir()


def test_two_runs_give_identical_tables_and_figures(two_runs):
    first, second = two_runs
    names = sorted(
        p.relative_to(first) for sub in ("tables", "figures") for p in (first / "paper" / sub).iterdir()
    )
    assert any(n.suffix == ".pdf" for n in names) and any(n.suffix == ".tex" for n in names)
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_html_report_holds_the_figures(two_runs):
    repo = two_runs[0]
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/test", "--report", "report.html"],
        cwd=repo, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    html = (repo / "report.html").read_text()
    assert "planted_power.pdf" in html and "permutation_nulls.pdf" in html
