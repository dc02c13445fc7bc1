"""Jinja2 environment for LaTeX templates, LaTeX escaping and number formatting.

Templates use LaTeX-safe delimiters so they stay readable as LaTeX:
``\\VAR{expr}`` for values, ``\\BLOCK{for ...}`` / ``\\BLOCK{endfor}`` for statements,
``\\#{comment}`` for comments, and lines starting with ``%%`` as line statements.
``StrictUndefined`` turns a missing key into an error, so a missing metric can never render as an
empty table cell. Autoescaping is off (it is HTML-only); free text goes through the ``tex`` filter.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

#: Characters with a special meaning in LaTeX text mode and their escaped forms.
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}

#: Plain-text names of registered datasets, substrates and variants (figures use them as they are,
#: tables LaTeX-escape them). Names not listed are shown raw (escaped in LaTeX), so user-added
#: names with underscores still compile.
PLAIN_NAMES: dict[str, str] = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tiny-imagenet": "Tiny-ImageNet",
    "fashion-mnist": "Fashion-MNIST",
    "deit_s": "DeiT-S",
    "swin_t": "Swin-T",
    "swin_tiny": "Swin-Tiny",
    "vit_b16": "ViT-B/16",
    "vit_tiny": "ViT-Tiny",
    "baseline": "Baseline",
    "block": "Block",
    "full": "Full",
}

#: Routing features in LaTeX math mode.
MATH_NAMES: dict[str, str] = {"r_agg": r"r_{\mathrm{agg}}", "depth_var": r"\mathrm{depth\_var}"}


def tex_escape(value: object) -> str:
    """Escape LaTeX special characters in ``str(value)`` (``a_b`` -> ``a\\_b``)."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(value))


def display_name(value: object) -> str:
    """LaTeX text for a dataset/substrate/variant/feature name: a known display name, else escaped."""
    key = str(value)
    if key in MATH_NAMES:
        return f"${MATH_NAMES[key]}$"
    return tex_escape(PLAIN_NAMES.get(key, key))


def _is_missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_num(x: float | None, digits: int = 3) -> str:
    """Fixed-point number with ``digits`` decimals; missing (None/NaN) -> ``--``; no ``-0.000``."""
    if _is_missing(x):
        return "--"
    s = f"{float(x):.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof = 1) of one quantity over seeds; ``n`` seeds."""

    mean: float
    std: float
    n: int


def fmt_pm(stat: Stat | None, digits: int = 3) -> str:
    """Math-mode ``$mean \\pm std$``; a single seed (std undefined) gives ``$mean$``; missing -> ``--``."""
    if stat is None or _is_missing(stat.mean):
        return "--"
    if stat.n < 2 or _is_missing(stat.std):
        return f"${fmt_num(stat.mean, digits)}$"
    return f"${fmt_num(stat.mean, digits)} \\pm {fmt_num(stat.std, digits)}$"


def fmt_g(x: float | None) -> str:
    """Up to three significant digits without trailing zeros (multipliers: 0.125, 0.5, 4); missing -> ``--``."""
    if _is_missing(x):
        return "--"
    return f"{float(x):.3g}"


def fmt_int(x: float | None) -> str:
    """Integer with thousands separated by a thin space (``12\\,345``); missing -> ``--``."""
    if _is_missing(x):
        return "--"
    return f"{int(round(float(x))):,}".replace(",", r"\,")


def make_env(templates_dir: str | os.PathLike[str]) -> jinja2.Environment:
    """The project's jinja2 environment over ``templates_dir``.

    Delimiters: ``\\VAR{}``, ``\\BLOCK{}``, ``\\#{}``; line statements ``%%``; line comments ``%#``.
    Filters: ``tex`` (escape), ``name`` (display name), ``num``, ``pm``, ``g``, ``int``.
    """
    path = Path(templates_dir)
    if not path.is_dir():
        raise ValueError(
            f"templates_dir={str(path)!r} is not a folder; pass the paper/templates folder"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path)),
        block_start_string=r"\BLOCK{",
        block_end_string="}",
        variable_start_string=r"\VAR{",
        variable_end_string="}",
        comment_start_string=r"\#{",
        comment_end_string="}",
        line_statement_prefix="%%",
        line_comment_prefix="%#",
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        tex=tex_escape, name=display_name, num=fmt_num, pm=fmt_pm, g=fmt_g, int=fmt_int
    )
    return env
