"""Shared fixtures for the reporting tests: a synthetic results tree and its aggregated summary."""

from __future__ import annotations

from pathlib import Path

import pytest

import report_synthetic as syn
from arcal.report.aggregate import aggregate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def results_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("results")
    return root, syn.write_tree(root)


@pytest.fixture(scope="session")
def summary_dir(
    results_tree: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    root, cells = results_tree
    out = tmp_path_factory.mktemp("summary")
    aggregate(root, cells, out)
    syn.write_planted(out, cells)
    syn.write_attention(out, cells)
    syn.write_temporal(out, cells)
    return out


@pytest.fixture
def templates_dir() -> Path:
    return REPO / "paper" / "templates"


@pytest.fixture(scope="session")
def baseline_only_summary(
    results_tree: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Summary of a grid without AttnRes models (routing tables and figures have no rows)."""
    root, cells = results_tree
    out = tmp_path_factory.mktemp("summary_baseline")
    baseline = [c for c in cells if "/baseline/" in c]
    aggregate(root, baseline, out)
    syn.write_planted(out, baseline)
    syn.write_attention(out, baseline)
    syn.write_temporal(out, [])
    return out


@pytest.fixture(scope="session")
def small_grid_summary(
    results_tree: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Summary of one dataset, one substrate, baseline + Full only, two seeds (a variant missing)."""
    root, cells = results_tree
    out = tmp_path_factory.mktemp("summary_small")
    keep = [
        c
        for c in cells
        if c.startswith("cifar10/vit_demo/") and "/block/" not in c and not c.endswith("seed2")
    ]
    aggregate(root, keep, out)
    syn.write_planted(out, keep)
    syn.write_attention(out, keep)
    syn.write_temporal(out, keep)
    return out


def _render_all(summary: Path, out: Path) -> Path:
    from arcal.report.figures import FIGURES, render_figure

    for name in FIGURES:
        render_figure(name, summary, out / f"{name}.pdf")
    return out


@pytest.fixture(scope="session")
def figures_full(summary_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every figure rendered once from the full synthetic summary (shared by the figure and paper tests)."""
    return _render_all(summary_dir, tmp_path_factory.mktemp("figures_full"))


@pytest.fixture(scope="session")
def figures_baseline(baseline_only_summary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every figure rendered once from the grid without AttnRes models."""
    return _render_all(baseline_only_summary, tmp_path_factory.mktemp("figures_baseline"))


@pytest.fixture(scope="session")
def figures_small(small_grid_summary: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every figure rendered once from the one-dataset, one-substrate grid with a variant missing."""
    return _render_all(small_grid_summary, tmp_path_factory.mktemp("figures_small"))
