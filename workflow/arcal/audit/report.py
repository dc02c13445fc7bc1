"""The audit's short, self-contained report: HTML with the figures inline, and a PDF with LaTeX.

Built from the CSVs the stages wrote (so it shows exactly the numbers on disk) and the test split
(for the reliability diagrams). The HTML needs nothing else: CSS inline, figures as base64 PNG,
no script, no network. The PDF is the same content typeset by latexmk from a jinja2 template
(``report.tex.j2`` beside this module, the project's LaTeX delimiters), written only when
``latexmk`` is on PATH. Both are deterministic: no dates, fixed figure metadata.

What it says first is the verdict per feature: the two within-bin permutation tests, the NW
probe on (c, feature) against the confidence-only nw-conf by worst-tertile ECE over tertiles of
the feature, and the planted control's size and power.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import arcal
from arcal.audit.inputs import AuditData
from arcal.io import atomic_write_bytes, atomic_write_text
from arcal.report.tables import PLANTED_POWER as POWER  # detected: as in the paper's planted table

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("report.tex.j2")
METHOD_LABELS = {"residualised": "residualised (arcal's default)", "within-bin": "within-bin (the paper's)"}
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None, "ModDate": None, "Creator": "arcal.audit", "Producer": None}


def _num(x: Any, digits: int = 4) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "--"
    if not np.isfinite(v):
        return "--"
    s = f"{v:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _read(out: Path, name: str) -> pd.DataFrame | None:
    path = out / name
    return pd.read_csv(path) if path.is_file() else None


# ----------------------------------------------------------------------------- tables


class Table:
    """A titled table of plain strings (escaped at render time) with a caption."""

    def __init__(self, title: str, header: list[str], rows: list[list[str]], caption: str = ""):
        self.title, self.header, self.rows, self.caption = title, header, rows, caption


def _verdict(out: Path, features: list[str]) -> Table:
    perm, probes, planted = (_read(out, n) for n in ("permutation.csv", "probes.csv", "planted.csv"))
    from arcal.calibration import nw_probe_name

    rows = []
    planted_summary = _planted_summary(planted)
    for f in features:
        row = [f]
        for method in METHOD_LABELS:
            hit = None if perm is None else perm[(perm["feature"] == f) & (perm["method"] == method)]
            if hit is None or hit.empty:
                row.append("not run")
            elif not bool(hit["ran"].iloc[0]):
                row.append("could not run")
            else:
                r = hit.iloc[0]
                row.append(f"p = {_num(r['p_value'])}" + (" (rejects)" if bool(r["reject"]) else ""))
        metric = f"tertile_ece_{f}"
        if probes is None:
            row.append("not run")
        else:
            look = probes[probes["metric"] == metric].set_index("probe")["value"]
            own = nw_probe_name(f)
            if "nw-conf" in look and own in look:
                d = look[own] - look["nw-conf"]
                row.append(f"{_num(look['nw-conf'])} &rarr; {_num(look[own])} ({'+' if d >= 0 else ''}{_num(d)})")
            else:
                row.append("--")
        if planted_summary is not None and not (planted_summary["feature"] == f).any():
            row.append(f"planted on {planted_summary['feature'].iloc[0]} only"
                       if len(planted_summary) else "not run")
        elif planted_summary is not None:
            sub = planted_summary[(planted_summary["feature"] == f)
                                  & (planted_summary["method"] == "residualised")]
            size = sub[sub["delta"] == 0]["reject_rate"]
            hits = sub[(sub["delta"] > 0) & (sub["reject_rate"] >= POWER)]
            row.append(f"size {_num(size.iloc[0], 2) if len(size) else '--'}; "
                       + (f"detects &delta; = {hits['delta'].min():g}" if len(hits)
                          else f"no &delta; reaches power {POWER:g}"))
        else:
            row.append("not run")
        rows.append(row)
    return Table(
        "Does the feature say anything beyond confidence?",
        ["feature", "residualised test", "within-bin test (paper)",
         "worst-tertile ECE: nw-conf &rarr; nw-&lt;feature&gt;", "planted control (residualised)"],
        rows,
        "Permutation p-values of the weighted matched-confidence gap (the feature permuted within "
        "confidence bins). Worst-tertile ECE over tertiles of the feature on the test split, of the "
        "Nadaraya-Watson probe on confidence alone and on (confidence, feature), both fitted on the "
        "calibration split; a lower value for the feature's probe means the feature helped. The "
        "planted control plants an effect of the feature of known size into redrawn correctness: "
        "its rejection rate at effect 0 is the test's size, and the smallest effect (logit units) "
        "detected with power " f"{POWER:g} says what the test could have found.",
    )


def _planted_summary(planted: pd.DataFrame | None) -> pd.DataFrame | None:
    if planted is None:
        return None
    from arcal.analysis.planted import summarise

    return summarise({"audit/audit/audit/seed0": planted})


def _tables(out: Path, data: AuditData, used: dict[str, Any]) -> list[Table]:
    features = data.features
    tables = [_verdict(out, features)]
    n = data.provenance["n"]
    files = data.provenance["files"]
    tables.append(Table("Inputs", ["", ""], [
        ["calibration", f"{files['calib']['path']} ({files['calib']['kind']}, {files['calib']['source']})"],
        ["test", f"{files['test']['path']} ({files['test']['kind']}, {files['test']['source']})"],
        ["split", data.provenance["split"]],
        ["examples", f"{n['calib']} calibration, {n['test']} test, {data.provenance['classes']} classes"],
        ["features", ", ".join(features)],
        ["per-layer matrices", ", ".join(f"{m} ({L} columns)" for m, L in data.provenance["matrices"].items()) or "none"],
        ["settings", f"{used['calibration']['n_bins']} bins, min_bin {used['calibration']['min_bin']}, "
                     f"{used['calibration']['n_perm']} permutations, alpha {used['calibration']['alpha']}, "
                     f"NW bandwidth {used['calibration']['nw_rule']}"],
    ]))
    metrics = _read(out, "metrics.csv")
    if metrics is not None:
        tables.append(Table("Raw-model metrics (test split)", ["metric", "value"],
                            [[m, _num(v)] for m, v in zip(metrics["metric"], metrics["value"])]))
    perm = _read(out, "permutation.csv")
    if perm is not None:
        tables.append(Table(
            "Matched-confidence gaps and permutation tests (test split)",
            ["feature", "test", "bins used", "max gap", "p (max)", "weighted gap", "p", "reject"],
            [[r.feature, METHOD_LABELS.get(r.method, r.method), str(r.n_bins_used),
              _num(r.max_gap), _num(r.p_value_max), _num(r.weighted_gap), _num(r.p_value),
              ("yes" if bool(r.reject) else "no") if bool(r.ran) else "not run"]
             for r in perm.itertuples()],
            "Per confidence bin with at least min_bin examples, the top and bottom thirds of the "
            "feature are compared on z - m(c) (residualised) or z - c (within-bin); p from "
            f"{used['calibration']['n_perm']} within-bin permutations (docs/methods.md).",
        ))
    probes = _read(out, "probes.csv")
    if probes is not None:
        metrics_shown = ["ece", *[f"tertile_ece_{f}" for f in features], "nll", "brier"]
        wide = probes.pivot_table(index="probe", columns="metric", values="value", sort=False)
        info = probes.drop_duplicates("probe").set_index("probe")
        rows = []
        for p in dict.fromkeys(probes["probe"]):
            rule = info.loc[p, "bandwidth_rule"]
            rule = "" if not isinstance(rule, str) or rule == "none" else f"{rule} x{_num(info.loc[p, 'multiplier'], 3)}"
            rows.append([p, rule, str(int(info.loc[p, "n_params"]))]
                        + [_num(wide.loc[p, m]) if m in wide.columns else "--" for m in metrics_shown])
        tables.append(Table(
            "Probes: fitted on calibration, scored on test",
            ["probe", "bandwidth", "parameters", "ECE", *[f"worst-tertile ECE ({f})" for f in features],
             "NLL", "Brier"],
            rows,
            "nw-&lt;feature&gt; pairs confidence with one feature; mlp-full sees confidence and a "
            "per-layer matrix, mlp-conf confidence alone at a matched parameter count, mlp-shuffled "
            "the matrix with its rows shuffled across examples (the capacity audit).",
        ))
    bw = _read(out, "bandwidth.csv")
    if bw is not None:
        rows = []
        for (probe, rule, mult), g in bw[bw["rule"].isin(["scott", "cv-nll", "oracle"])].groupby(
                ["probe", "rule", "multiplier"], sort=False):
            look = dict(zip(g["metric"], g["value"]))
            rows.append([probe, rule + (" (looks at test labels)" if rule == "oracle" else ""),
                         _num(mult, 3), _num(look.get("ece"))]
                        + [_num(look.get(f"tertile_ece_{f}")) for f in features])
        tables.append(Table("Bandwidth sensitivity", ["probe", "rule", "multiplier", "ECE",
                            *[f"worst-tertile ECE ({f})" for f in features]], rows))
    summary = _planted_summary(_read(out, "planted.csv"))
    if summary is not None:
        tables.append(Table(
            f"Planted control (feature {used['planted']['feature']})",
            ["effect (logit)", "achieved effect", "test", "rejection rate", "95% interval",
             "ECE gain of nw-&lt;feature&gt;"],
            [[f"{r.delta:g}", _num(r.achieved_effect), METHOD_LABELS.get(r.method, r.method),
              f"{_num(r.reject_rate, 2)} ({r.n_ran}/{r.n_rep} ran)" if r.n_ran else "not run",
              f"[{_num(r.reject_lo, 2)}, {_num(r.reject_hi, 2)}]", _num(r.ece_gain_mean)]
             for r in summary.itertuples()],
            "Correctness redrawn from the confidence-only map with an effect of the feature's "
            "within-bin rank of the given size; at effect 0 the rejection rate is the test's size.",
        ))
    return tables


# ----------------------------------------------------------------------------- figures


def _figure(builder: Callable[[Any], None], panels: int, height: float = 2.2) -> Any:
    import matplotlib
    from matplotlib.figure import Figure

    from arcal.report.figures import STYLE_FILE

    with matplotlib.rc_context(fname=str(STYLE_FILE)):
        fig = Figure(figsize=(min(2.3 * panels, 7.0), height))
        axes = fig.subplots(1, panels, squeeze=False)[0]
        builder(axes)
    return fig


def _fig_reliability(data: AuditData, n_bins: int) -> Any:
    from arcal.calibration import bin_index, tertile_index

    test = data.test
    conf, correct, b = test.conf, test.correct, bin_index(test.conf, n_bins)

    def draw(axes: Any) -> None:
        for ax, f in zip(axes, data.features):
            t = tertile_index(test.feature(f))
            for k, (label, color) in enumerate((("low", "#9ecae1"), ("mid", "#4292c6"), ("high", "#08306b"))):
                m = t == k
                n = np.bincount(b[m], minlength=n_bins)
                ok = n >= 5
                acc = np.bincount(b[m], weights=correct[m], minlength=n_bins)[ok] / n[ok]
                cf = np.bincount(b[m], weights=conf[m], minlength=n_bins)[ok] / n[ok]
                ax.plot(cf, acc, "o-", color=color, label=f"{label} {f}")
            ax.plot([0, 1], [0, 1], "--", color="0.6", lw=0.8)
            ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=f"tertiles of {f}")
            ax.legend(loc="upper left")

    return _figure(draw, len(data.features))


def _fig_nulls(out: Path, features: list[str]) -> Any | None:
    path = out / "permutation.null.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        nulls = {k: z[k] for k in z.files}
    methods = [m for m in METHOD_LABELS if any(k.startswith(f"{m}/") for k in nulls)]

    def draw(axes: Any) -> None:
        for ax, f in zip(axes, features):
            for i, m in enumerate(methods):
                null, obs = nulls.get(f"{m}/{f}"), nulls.get(f"{m}/observed_{f}")
                if null is None or null.size == 0:
                    continue
                ax.hist(null, bins=40, color=f"C{i}", alpha=0.45, label=f"{m} null")
                ax.axvline(float(obs), color=f"C{i}", lw=1.2, label=f"{m} observed")
            ax.set(xlabel="weighted gap", ylabel="permutations", title=f)
            ax.legend(loc="upper right")

    return _figure(draw, len(features))


def _fig_planted(out: Path) -> Any | None:
    summary = _planted_summary(_read(out, "planted.csv"))
    if summary is None or summary.empty:
        return None

    def draw(axes: Any) -> None:
        ax = axes[0]
        for i, (m, g) in enumerate(summary.groupby("method", sort=False)):
            g = g.sort_values("delta")
            ax.errorbar(g["delta"], g["reject_rate"],
                        yerr=[g["reject_rate"] - g["reject_lo"], g["reject_hi"] - g["reject_rate"]],
                        fmt="o-", color=f"C{i}", capsize=2, label=METHOD_LABELS.get(m, m))
        ax.axhline(POWER, ls=":", color="0.5", lw=0.8)
        ax.set(xlabel="planted effect (logit units)", ylabel="rejection rate", ylim=(-0.02, 1.02),
               title=f"planted control: {summary['feature'].iloc[0]}")
        ax.legend(loc="lower right")

    return _figure(draw, 1, 2.4)


def _fig_bandwidth(out: Path, features: list[str]) -> Any | None:
    bw = _read(out, "bandwidth.csv")
    if bw is None:
        return None
    grid = bw[bw["rule"] == "grid"]

    def draw(axes: Any) -> None:
        for ax, f in zip(axes, features):
            sel = grid[grid["metric"] == f"tertile_ece_{f}"]
            for i, (p, g) in enumerate(sel.groupby("probe", sort=False)):
                ax.plot(g["multiplier"], g["value"], "o-", color=f"C{i}", label=p)
            ax.set_xscale("log", base=2)
            ax.set(xlabel="bandwidth multiplier (x Scott)", ylabel=f"worst-tertile ECE ({f})", title=f)
            ax.legend(loc="upper left")

    return _figure(draw, len(features))


def _figures(out: Path, data: AuditData, used: dict[str, Any]) -> list[tuple[str, str, Any]]:
    figs = [
        ("reliability", "Reliability of the raw confidence in each tertile of each feature (test "
         "split; bins with fewer than five examples left out).",
         _fig_reliability(data, used["calibration"]["n_bins"])),
        ("nulls", "Permutation nulls of the weighted gap with the observed value.",
         _fig_nulls(out, data.features)),
        ("bandwidth", "Worst-tertile ECE against the bandwidth multiplier (test scores over the "
         "CV grid).", _fig_bandwidth(out, data.features)),
        ("planted", "Planted control: rejection rate against the planted effect (95% "
         "Clopper-Pearson intervals; dotted: the target power).", _fig_planted(out)),
    ]
    return [(name, caption, fig) for name, caption, fig in figs if fig is not None]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, metadata=_PNG_METADATA)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# ----------------------------------------------------------------------------- rendering

_CSS = """body{font-family:system-ui,-apple-system,"DejaVu Sans",sans-serif;max-width:70em;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border-bottom:1px solid #ddd;
padding:.25em .6em;text-align:left}th{background:#f4f4f4}p.cap{font-size:.85em;color:#555;max-width:60em}
img{max-width:100%}code{font-size:.9em}"""


def _html_cell(text: str) -> str:
    # cells hold plain text plus the few entities the builders use (&rarr; &delta; &lt; &gt;)
    keep = {"&rarr;": "\x00", "&delta;": "\x01", "&lt;": "\x02", "&gt;": "\x03"}
    for k, v in keep.items():
        text = text.replace(k, v)
    text = html.escape(text)
    for k, v in keep.items():
        text = text.replace(v, k)
    return text


def render_html(tables: list[Table], figures: list[tuple[str, str, Any]], title: str) -> str:
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>"
             f"{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"cap\">Written by <code>python -m arcal.audit</code> (arcal "
             f"{html.escape(arcal.__version__)}); definitions in arcal's docs/methods.md. The "
             "numbers are those of the CSV files beside this report.</p>"]
    figs = list(figures)
    for i, t in enumerate(tables):
        parts.append(f"<h2>{_html_cell(t.title)}</h2><table><tr>"
                     + "".join(f"<th>{_html_cell(h)}</th>" for h in t.header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in t.rows]
        parts.append("</table>")
        if t.caption:
            parts.append(f"<p class=\"cap\">{_html_cell(t.caption)}</p>")
        if i == 0:  # the figures follow the verdict
            for name, caption, fig in figs:
                parts.append(f"<figure><img alt=\"{name}\" src=\"data:image/png;base64,{_png(fig)}\">"
                             f"<figcaption class=\"cap\">{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _tex_cell(text: str) -> str:
    from arcal.report.latex import tex_escape

    ents = {"&rarr;": r"$\rightarrow$", "&delta;": r"$\delta$", "&lt;": "<", "&gt;": ">"}
    marks = {k: f"\x00{i}\x00" for i, k in enumerate(ents)}
    for k, m in marks.items():
        text = text.replace(k, m)
    text = tex_escape(text).replace("<", r"\textless{}").replace(">", r"\textgreater{}")
    for k, m in marks.items():
        text = text.replace(m, ents[k])
    return text


def render_pdf(tables: list[Table], figures: list[tuple[str, str, Any]], title: str,
               out_pdf: Path) -> bool:
    """Typeset the report with latexmk into ``out_pdf``; False (and a log line) without latexmk."""
    latexmk = shutil.which("latexmk")
    if latexmk is None:
        log.info("latexmk is not on PATH: the PDF report is skipped (the HTML report has it all)")
        return False
    from arcal.report.latex import make_env

    env = make_env(TEMPLATE.parent)
    with tempfile.TemporaryDirectory(prefix="arcal-audit-") as tmp:
        work = Path(tmp)
        for name, _, fig in figures:
            fig.savefig(work / f"{name}.pdf", format="pdf", metadata=_PDF_METADATA)
        tex = env.get_template(TEMPLATE.name).render(
            title=_tex_cell(title),
            version=_tex_cell(arcal.__version__),
            tables=[{"title": _tex_cell(t.title), "header": [_tex_cell(h) for h in t.header],
                     "rows": [[_tex_cell(c) for c in r] for r in t.rows],
                     "caption": _tex_cell(t.caption)} for t in tables],
            figures=[{"name": n, "caption": _tex_cell(c)} for n, c, _ in figures],
        )
        (work / "report.tex").write_text(tex)
        env_vars = dict(os.environ, SOURCE_DATE_EPOCH="0", FORCE_SOURCE_DATE="1")
        proc = subprocess.run([latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error",
                               "report.tex"], cwd=work, capture_output=True, text=True,
                              env=env_vars, timeout=300)
        if proc.returncode != 0:
            tail = (work / "report.log").read_text(errors="replace")[-3000:] if (work / "report.log").exists() else proc.stdout[-3000:]
            raise RuntimeError(f"latexmk failed on the audit report:\n{tail}")
        atomic_write_bytes(out_pdf, (work / "report.pdf").read_bytes())
    return True


def write_report(out_dir: str | Path, data: AuditData, used: dict[str, Any],
                 pdf: bool = True) -> dict[str, Path]:
    """``report.html`` (and ``report.pdf`` when ``pdf`` and latexmk is present) in ``out_dir``
    from the CSVs written there; returns the paths written."""
    out = Path(out_dir)
    paths = list(dict.fromkeys(f["path"] for f in data.provenance["files"].values()))
    title = f"arcal audit of {' and '.join(paths)}"
    tables = _tables(out, data, used)
    figures = _figures(out, data, used)
    written = {"html": out / "report.html"}
    atomic_write_text(written["html"], render_html(tables, figures, title))
    if pdf and render_pdf(tables, figures, title, out / "report.pdf"):
        written["pdf"] = out / "report.pdf"
    return written
