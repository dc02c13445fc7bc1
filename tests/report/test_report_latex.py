"""The jinja2 LaTeX environment: delimiters, escaping, number formatting, strict undefined."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from arcal.report.latex import Stat, display_name, fmt_int, fmt_num, fmt_pm, make_env, tex_escape


def test_escape_covers_every_special_character() -> None:
    assert tex_escape("swin_demo") == r"swin\_demo"
    assert tex_escape(r"a&b%c$d#e_f{g}h~i^j\k") == (
        r"a\&b\%c\$d\#e\_f\{g\}h\textasciitilde{}i\textasciicircum{}j\textbackslash{}k"
    )


def test_display_names_fall_back_to_escaped_raw_names() -> None:
    assert display_name("cifar10") == "CIFAR-10"
    assert display_name("my_new_set") == r"my\_new\_set"


def test_every_built_in_dataset_has_its_display_name() -> None:
    """Display names are keyed by the dataset names the config uses (arcal.data.KINDS)."""
    from arcal.data import KINDS

    assert {display_name(k) for k in KINDS if k not in ("folder", "npz")} == {
        "Fashion-MNIST", "CIFAR-10", "CIFAR-100", "Tiny-ImageNet"
    }


@pytest.mark.parametrize(
    ("stat", "digits", "expected"),
    [
        (Stat(0.1234, 0.0041, 3), 3, r"$0.123 \pm 0.004$"),
        (Stat(0.1234, float("nan"), 1), 3, r"$0.123$"),
        (Stat(-0.0001, 0.0002, 3), 3, r"$0.000 \pm 0.000$"),
        (Stat(0.5, 0.25, 2), 1, r"$0.5 \pm 0.2$"),
        (None, 3, "--"),
        (Stat(float("nan"), 0.1, 3), 3, "--"),
    ],
)
def test_mean_pm_std_formatting(stat: Stat | None, digits: int, expected: str) -> None:
    assert fmt_pm(stat, digits) == expected


def test_plain_number_formatting() -> None:
    assert fmt_num(0.04999, 3) == "0.050"
    assert fmt_num(float("nan")) == "--"
    assert fmt_int(12345.0) == r"12\,345"


def test_delimiters_leave_latex_braces_alone(tmp_path: Path) -> None:
    (tmp_path / "t.tex.j2").write_text(
        "\\textbf{x} \\VAR{name|tex}\n%% for r in rows\n\\VAR{r|pm} \\\\\n%% endfor\n\\BLOCK{if flag}yes\\BLOCK{endif}\n"
    )
    out = (
        make_env(tmp_path)
        .get_template("t.tex.j2")
        .render(name="a_b", rows=[Stat(1.0, 0.5, 3)], flag=True)
    )
    assert out == "\\textbf{x} a\\_b\n$1.000 \\pm 0.500$ \\\\\nyes"  # trim_blocks eats the newline


def test_missing_key_is_an_error_not_an_empty_cell(tmp_path: Path) -> None:
    (tmp_path / "t.tex.j2").write_text("\\VAR{row.ece|pm} & \\VAR{row.nll|pm}\n")
    tpl = make_env(tmp_path).get_template("t.tex.j2")
    with pytest.raises(jinja2.UndefinedError, match="nll"):
        tpl.render(row={"ece": Stat(0.1, 0.01, 3)})


def test_templates_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="templates_dir"):
        make_env(tmp_path / "nope")
