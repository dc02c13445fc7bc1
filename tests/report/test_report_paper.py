"""paper/main.tex compiles with latexmk from rendered synthetic tables and figures."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from arcal.report.figures import FIGURES
from arcal.report.tables import TABLES, render_string, render_table

REPO = Path(__file__).resolve().parents[2]
LATEXMK = shutil.which("latexmk")
needs_latexmk = pytest.mark.skipif(
    LATEXMK is None, reason="latexmk is not installed: cannot build the paper"
)


def _build(summary: Path, figures: Path, paper: Path) -> str:
    shutil.copy(REPO / "paper" / "main.tex", paper / "main.tex")
    for name in TABLES:
        render_table(name, summary, paper / "tables" / f"{name}.tex")
    shutil.copytree(figures, paper / "figures")
    assert sorted(p.stem for p in (paper / "figures").glob("*.pdf")) == sorted(FIGURES)
    proc = subprocess.run(
        [
            LATEXMK,
            "-pdf",
            "-outdir=build",
            "-interaction=nonstopmode",
            "-halt-on-error",
            "main.tex",
        ],
        cwd=paper,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (
        (paper / "build" / "main.log").read_text(errors="replace")
        if (paper / "build" / "main.log").exists()
        else ""
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + log[-3000:]
    assert (paper / "build" / "main.pdf").stat().st_size > 10000
    return log


@needs_latexmk
def test_paper_builds_from_synthetic_results(
    summary_dir: Path, figures_full: Path, tmp_path: Path
) -> None:
    log = _build(summary_dir, figures_full, tmp_path)
    assert not re.search(r"undefined|Citation .* undefined|There were undefined references", log)
    pdftotext = shutil.which("pdftotext")
    if pdftotext:
        text = subprocess.run(
            [pdftotext, str(tmp_path / "build" / "main.pdf"), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        text = " ".join(text.split())
        assert ("Of 48 (model, feature) pairs, the residualised test ran on 47, of which 5 reject "
                "at their level and 3 survive") in text


@needs_latexmk
def test_paper_builds_for_a_grid_without_attnres(
    baseline_only_summary: Path, figures_baseline: Path, tmp_path: Path
) -> None:
    _build(baseline_only_summary, figures_baseline, tmp_path)


def test_main_tex_quotes_no_hand_typed_statistics(summary_dir: Path) -> None:
    """Prose numbers come from macros: no decimals in the text, and every macro it uses is generated."""
    source = (REPO / "paper" / "main.tex").read_text()
    body = source.split("\\begin{document}")[1].split("\\begin{thebibliography}")[0]
    body = re.sub(r"(?<!\\)%.*", "", body)
    body = re.sub(r"\\includegraphics\[[^]]*\]", "", body)  # layout options, not statistics
    assert not re.findall(r"\d+\.\d+", body)
    used = set(re.findall(r"\\([A-Za-z]+)\{\}", body))
    generated = set(
        re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", render_string("numbers", summary_dir))
    )
    local = set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", source))
    assert used and used <= generated | local, sorted(used - generated - local)
    assert len(used & generated) >= 20


def _overfull(table: str, summary: Path, tmp_path: Path) -> list[str]:
    """Overfull boxes of `table` typeset alone under main.tex's preamble (its page geometry)."""
    preamble = (REPO / "paper" / "main.tex").read_text().split("\\begin{document}")[0]
    for name in ("numbers", table):
        render_table(name, summary, tmp_path / "tables" / f"{name}.tex")
    (tmp_path / "doc.tex").write_text(
        preamble + f"\\begin{{document}}\n\\input{{tables/{table}}}\n\\end{{document}}\n"
    )
    proc = subprocess.run(
        [LATEXMK, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return re.findall(r"Overfull \\hbox \([\d.]+pt too wide\)", log)


@needs_latexmk
@pytest.mark.parametrize("table", [name for name in TABLES if name != "numbers"])
def test_every_table_fits_the_text_width(table: str, summary_dir: Path, tmp_path: Path) -> None:
    assert _overfull(table, summary_dir, tmp_path) == []
