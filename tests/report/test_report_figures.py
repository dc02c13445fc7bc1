"""Each figure renders to a non-empty, byte-deterministic PDF for full, small and empty grids."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from arcal.report.figures import FIGURES, STYLE_FILE, render_figure


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_is_a_non_empty_pdf_with_truetype_fonts(name: str, figures_full: Path) -> None:
    pdf = (figures_full / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 5000
    assert b"CreationDate" not in pdf
    assert b"/Type3" not in pdf, "fonts must be embedded as TrueType (pdf.fonttype 42)"


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_two_renders_are_byte_identical(
    name: str, small_grid_summary: Path, figures_small: Path, tmp_path: Path
) -> None:
    again = render_figure(name, small_grid_summary, tmp_path / f"{name}.pdf").read_bytes()
    assert again == (figures_small / f"{name}.pdf").read_bytes()


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_renders_for_small_and_empty_grids(
    name: str, figures_small: Path, figures_baseline: Path
) -> None:
    for folder in (figures_small, figures_baseline):
        pdf = (folder / f"{name}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000


def test_style_file_is_shared_and_embeds_truetype() -> None:
    text = STYLE_FILE.read_text()
    assert "pdf.fonttype: 42" in text


def test_bad_names_and_suffixes(summary_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown figure"):
        render_figure("nope", summary_dir, tmp_path / "x.pdf")
    with pytest.raises(ValueError, match=r"\.pdf"):
        render_figure("training", summary_dir, tmp_path / "x.png")
    with pytest.raises(ValueError, match="history.csv"):
        render_figure("training", tmp_path, tmp_path / "x.pdf")


def test_cli_matches_library(
    baseline_only_summary: Path, figures_baseline: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli" / "training.pdf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "arcal.report.figures",
            "training",
            "--summary",
            str(baseline_only_summary),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == (figures_baseline / "training.pdf").read_bytes()
