"""Reporting stage: aggregate per-cell results, render LaTeX tables, figures and paper macros.

Modules:
* ``aggregate``: per-cell CSV/NPZ files -> tidy tables under ``results/summary/``.
* ``latex``: the jinja2 environment (LaTeX-safe delimiters, escaping, number formatting).
* ``tables``: table registry ``TABLES`` and ``render_table`` (templates in ``paper/templates``).
* ``figures``: figure registry ``FIGURES`` and ``render_figure`` (style ``arcal.mplstyle``).

Every output is written atomically with the ``arcal.io`` helpers (temporary file in the destination
folder, then ``os.replace``), so an interrupted job never leaves a partial file behind.
"""
