"""Run the diagnostic suite on audit inputs: the workflow's own per-cell stages, one by one.

Every number comes from the functions the workflow's rules call (``arcal.analysis``: metrics,
permutation, probes, bandwidth, planted) with the workflow's settings blocks, so an audit of an
arcal dump reproduces that cell's results exactly. What the audit changes is only *which*
features and probes the settings name (:func:`audit_settings`):

* ``calibration.features``: the audited features (the permutation tests run on each);
* ``calibration.probes``: the configured list with the routing NW probes (nw-ragg, ar-condcal)
  replaced by the NW probe of every audited feature (``nw-<feature>``; nw-ragg and ar-condcal
  for r_agg and depth_var) and the capacity MLPs repeated for every audited matrix
  (``mlp-full@A``; plain ``mlp-full`` for H), or dropped when there is none;
* ``calibration.sweep_probes``: likewise, the NW probe of every audited feature;
* ``planted.feature``: the configured one when audited, else the first audited feature.

For an arcal dump of an AttnRes cell, whose default features are r_agg and depth_var and matrix
H, these are exactly the configured lists.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import arcal
from arcal import calibration as cal
from arcal.audit.inputs import AuditData
from arcal.io import atomic_save_npz, atomic_write_csv, atomic_write_text, git_commit

log = logging.getLogger(__name__)

#: Stages in the order they run, and the files each writes into the output folder.
STAGES: dict[str, tuple[str, ...]] = {
    "metrics": ("metrics.csv",),
    "permutation": ("permutation.csv", "permutation.null.npz"),
    "probes": ("probes.csv",),
    "bandwidth": ("bandwidth.csv",),
    "planted": ("planted.csv",),
}
#: The routing probes of the configured lists that stand for "the NW probe of each feature".
_FEATURE_PROBES = ("nw-ragg", "ar-condcal")


def _expand(configured: Sequence[str], features: Sequence[str], matrices: Sequence[str]) -> list[str]:
    """The probe list for the audited features and matrices (module docstring)."""
    feature_probes = [cal.nw_probe_name(f) for f in features]
    kinds = [p.removeprefix("mlp-") for p in configured if p.startswith("mlp-")]
    out: list[str] = []
    for p in configured:
        if p in _FEATURE_PROBES:
            out += [q for q in feature_probes if q not in out]
        elif p.startswith("mlp-"):
            if p.removeprefix("mlp-") == kinds[0]:
                out += [cal.mlp_probe_name(k, m) for m in matrices for k in kinds]
        elif p not in out:
            out.append(p)
    missing = [q for q in feature_probes if q not in out]
    if missing:  # the configured list had no routing NW probe: the audit needs them anyway
        nw = [i for i, p in enumerate(out) if cal.is_nw_probe(p)]
        at = nw[-1] + 1 if nw else len(out)
        out[at:at] = missing
    return out


def audit_settings(
    settings: dict[str, Any], features: Sequence[str], matrices: Sequence[str],
    planted_feature: str | None = None,
) -> dict[str, dict[str, Any]]:
    """The ``calibration`` and ``planted`` blocks with the audited names (module docstring)."""
    calibration = copy.deepcopy(settings["calibration"])
    planted = copy.deepcopy(settings["planted"])
    calibration["features"] = list(features)
    calibration["probes"] = _expand(calibration["probes"], features, matrices)
    calibration["sweep_probes"] = _expand(calibration["sweep_probes"], features, ())
    if planted_feature is not None:
        if planted_feature not in features:
            raise ValueError(f"planted_feature: {planted_feature!r} is not an audited feature "
                             f"({', '.join(features)})")
        planted["feature"] = planted_feature
    elif planted.get("feature") not in features:
        planted["feature"] = features[0]
    return {"calibration": calibration, "planted": planted}


def _metrics(data: AuditData, s: dict[str, Any], seed: int, out: Path) -> str:
    from arcal.analysis.metrics import model_metrics

    table = model_metrics(data.test, s["calibration"]["n_bins"])
    atomic_write_csv(out / "metrics.csv", table)
    acc, ece = (float(table.set_index("metric").loc[m, "value"]) for m in ("accuracy", "ece"))
    return f"accuracy {acc:.4f}, ECE {ece:.4f}"


def _permutation(data: AuditData, s: dict[str, Any], seed: int, out: Path) -> str:
    from arcal.analysis.permutation import feature_tests

    table, nulls = feature_tests(data.test, s["calibration"], seed)
    atomic_save_npz(out / "permutation.null.npz", **nulls)
    atomic_write_csv(out / "permutation.csv", table)
    ran = table[table["ran"]]
    return f"{len(table)} tests, {len(ran)} ran, {int(ran['reject'].astype(bool).sum())} reject"


def _probes(data: AuditData, s: dict[str, Any], seed: int, out: Path) -> str:
    from arcal.analysis.probes import probe_rows

    table = probe_rows(data.calib, data.test, s["calibration"], seed, features=data.features)
    atomic_write_csv(out / "probes.csv", table)
    return f"{table['probe'].nunique()} probes"


def _bandwidth(data: AuditData, s: dict[str, Any], seed: int, out: Path) -> str:
    from arcal.analysis.bandwidth import sweep_rows

    table = sweep_rows(data.calib, data.test, s["calibration"], seed, features=data.features)
    atomic_write_csv(out / "bandwidth.csv", table)
    return f"{table['probe'].nunique()} probes swept"


def _planted(data: AuditData, s: dict[str, Any], seed: int, out: Path) -> str:
    from arcal.analysis.planted import planted_rows

    table = planted_rows(data.calib, data.test, s["planted"], s["calibration"], seed)
    atomic_write_csv(out / "planted.csv", table)
    return f"feature {s['planted']['feature']}, {len(table)} rows"


_RUNNERS: dict[str, Callable[[AuditData, dict[str, Any], int, Path], str]] = {
    "metrics": _metrics, "permutation": _permutation, "probes": _probes,
    "bandwidth": _bandwidth, "planted": _planted,
}


def _plan(name: str, s: dict[str, Any], data: AuditData) -> str:
    c, p = s["calibration"], s["planted"]
    return {
        "metrics": f"raw-model metrics of {data.test.n} test examples",
        "permutation": f"{len(c['features'])} feature(s) x {len(c['test_methods'])} test(s), "
                       f"{c['n_perm']} permutations each",
        "probes": f"{len(c['probes'])} probes fitted on {data.calib.n} calibration examples: "
                  f"{', '.join(c['probes'])}",
        "bandwidth": f"{len(c['sweep_probes'])} NW probe(s) over the bandwidth grid",
        "planted": f"feature {p['feature']}, {len(p['deltas'])} effect sizes x {p['repetitions']} "
                   f"repetitions, {p['n_perm']} permutations",
    }[name]


def run_audit(
    data: AuditData,
    settings: dict[str, Any],
    seed: int,
    out_dir: str | Path,
    stages: Sequence[str] = tuple(STAGES),
    planted_feature: str | None = None,
) -> dict[str, Any]:
    """Run ``stages`` on ``data`` with the config-shaped ``settings`` (blocks ``calibration`` and
    ``planted``) and ``seed``, writing each stage's files into ``out_dir`` and ``inputs.json``
    (what was audited, with which settings). A progress line per stage. Returns the settings
    used (the audited blocks)."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"stages: unknown {unknown}; choose from {', '.join(STAGES)}")
    used = audit_settings(settings, data.features, data.matrices, planted_feature)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    order = [s for s in STAGES if s in stages]
    atomic_write_text(out / "inputs.json", json.dumps({
        **data.provenance, "seed": seed, "stages": order, "settings": used,
        "arcal_version": arcal.__version__, "git_commit": git_commit(),
    }, indent=2, sort_keys=True, default=str) + "\n")
    for i, name in enumerate(order, 1):
        log.info("audit [%d/%d] %s: %s", i, len(order), name, _plan(name, used, data))
        t0 = time.perf_counter()
        summary = _RUNNERS[name](data, used, seed, out)
        log.info("audit [%d/%d] %s done in %.1f s: %s", i, len(order), name,
                 time.perf_counter() - t0, summary)
    return used
