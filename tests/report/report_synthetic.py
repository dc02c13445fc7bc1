"""A small synthetic results tree in the exact per-cell formats the analysis stages write.

Grid: 2 datasets x 2 substrates x {baseline, block, full} x 3 seeds. Values are deterministic and
chosen so tests can check aggregation by hand: every raw metric is ``base + 0.01 * seed`` (mean over
seeds 0, 1, 2 = base + 0.01, sample std = 0.01). Permutation tests: among the residualised ones
exactly ``N_SMALL_P`` at p = 0.0002 and ``N_MID_P`` at p = 0.03, and ``N_NOT_RUN`` that could not
run; among the paper's (within-bin) ones ``N_SMALL_P_PAPER`` and ``N_MID_P_PAPER``; all other
p-values are larger than 0.1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

DATASETS = ("fashion-mnist", "cifar10")
SUBSTRATES = ("vit_demo", "swin_demo")
VARIANTS = ("baseline", "block", "full")
SEEDS = (0, 1, 2)
N_TEST, N_CLASSES, N_EPOCHS, N_PERM = 240, 10, 6, 199
PROBES = (
    "raw",
    "temperature",
    "nw-conf",
    "nw-entropy",
    "nw-ragg",
    "ar-condcal",
    "linear-conf",
    "mlp-conf",
    "mlp-full",
    "mlp-shuffled",
)
NW_PROBES = ("nw-conf", "nw-entropy", "nw-ragg", "ar-condcal")
PROBE_METRICS = (
    "ece",
    *(f"tertile_ece_{f}{part}" for f in ("depth_var", "r_agg") for part in ("", "_low", "_mid", "_high")),
    "smooth_ece", "nll", "brier",
)  # arcal.calibration.METRICS
SCOTT = (0.25, 0.5, 1.0, 2.0, 4.0)
CV_GRID = tuple(float(0.25 * 2.0 ** (i / 3)) for i in range(13))  # arcal.calibration.CV_MULTIPLIERS
N_SMALL_P, N_MID_P, N_NOT_RUN = 3, 2, 1
N_SMALL_P_PAPER, N_MID_P_PAPER = 6, 4

#: base value of each raw-model metric (before + 0.01 * seed and the dataset/variant offsets)
METRIC_BASE = {
    "accuracy": 0.80,
    "ece": 0.050,
    "mce": 0.150,
    "classwise_ece": 0.020,
    "smooth_ece": 0.045,
    "nll": 0.600,
    "brier": 0.280,
}


def cells() -> list[str]:
    return [
        f"{d}/{s}/{v}/seed{k}"
        for d in DATASETS
        for s in SUBSTRATES
        for v in VARIANTS
        for k in SEEDS
    ]


def metric_value(metric: str, dataset: str, variant: str, seed: int) -> float:
    """Raw-model metric of a cell: METRIC_BASE + 0.1 (second dataset) + 0.001 (full) + 0.01 seed."""
    off = 0.1 * DATASETS.index(dataset) + (0.001 if variant == "full" else 0.0)
    return round(METRIC_BASE[metric] + off + 0.01 * seed, 6)


def probe_value(probe: str, metric: str, seed: int) -> float:
    """Probe score: 0.02 + 0.001 * probe index + 0.002 * seed (+0.5 for nll/brier); raw is worse."""
    v = 0.02 + 0.001 * PROBES.index(probe) + 0.002 * seed + (0.05 if probe == "raw" else 0.0)
    return round(v + (0.5 if metric in ("nll", "brier") else 0.0), 6)


def _n_sources(variant: str) -> list[int]:
    return [2, 3, 3, 4] if variant == "block" else [2, 3, 4, 5, 6, 7]


def _csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)


def write_tree(root: Path) -> list[str]:
    """Write the synthetic tree under ``root`` and return the list of cells."""
    plan = {"residualised": [0.0002] * N_SMALL_P + [0.03] * N_MID_P + [np.nan] * N_NOT_RUN,
            "within-bin": [0.0002] * N_SMALL_P_PAPER + [0.03] * N_MID_P_PAPER}
    for i, cell in enumerate(cells()):
        dataset, substrate, variant, seed_s = cell.split("/")
        seed = int(seed_s[4:])
        rng = np.random.default_rng(1000 + i)
        ar = variant != "baseline"
        _csv(
            pd.DataFrame(
                {
                    "metric": list(METRIC_BASE),
                    "value": [metric_value(m, dataset, variant, seed) for m in METRIC_BASE],
                }
            ),
            root / "metrics" / f"{cell}.csv",
        )
        ep = np.arange(1, N_EPOCHS + 1)
        _csv(
            pd.DataFrame(
                {
                    "epoch": ep,
                    "train_loss": 2.0 / ep,
                    "train_acc": 0.5 + 0.05 * ep,
                    "test_acc": 0.45 + 0.05 * ep + 0.005 * seed,
                    "test_ece": 0.1 / ep,
                    "test_nll": 1.5 / ep,
                    "lr": 1e-3 * (1 - ep / (N_EPOCHS + 1)),
                    "seconds": 1.5 * ep,
                }
            ),
            root / "train" / cell / "history.csv",
        )
        # dump: logits whose confidence spreads over [0.1, 1]; correctness follows confidence
        labels = rng.integers(0, N_CLASSES, N_TEST)
        logits = rng.normal(0, 1, (N_TEST, N_CLASSES)).astype(np.float32)
        boost = rng.uniform(0, 6, N_TEST).astype(np.float32)
        right = rng.uniform(size=N_TEST) < 0.3 + 0.1 * boost
        target = np.where(right, labels, (labels + 1) % N_CLASSES)
        logits[np.arange(N_TEST), target] += boost
        ns = _n_sources(variant) if ar else []
        L = len(ns)
        H = rng.uniform(0.2, 1.0, (N_TEST, L)).astype(np.float32)
        V = rng.uniform(0.0, 0.8, (N_TEST, L)).astype(np.float32)
        consumers = np.array(
            [f"blocks.{j // 2}.{'attn' if j % 2 == 0 else 'mlp'}" for j in range(L)], dtype=str
        )
        meta = json.dumps(
            {"dataset": dataset, "substrate": substrate, "variant": variant, "seed": seed}
        )
        nan = np.full(N_TEST, np.nan, dtype=np.float32)
        d = root / "dumps" / cell
        d.mkdir(parents=True, exist_ok=True)
        np.savez(
            d / "test.npz",
            logits=logits,
            labels=labels.astype(np.int64),
            H=H,
            V=V,
            r_agg=H.mean(axis=1) if ar else nan,
            depth_var=V.mean(axis=1) if ar else nan,
            n_sources=np.array(ns, dtype=np.int64),
            consumers=consumers,
            meta=np.array(meta),
        )
        width = max(ns, default=0)
        alpha = np.full((L, width), np.nan)
        for j, n in enumerate(ns):
            w = rng.dirichlet(np.ones(n))
            alpha[j, :n] = w
        np.savez(
            d / "routing_profile.npz",
            consumers=consumers,
            n_sources=np.array(ns, dtype=np.int64),
            alpha_mean=alpha,
        )
        if not ar:
            continue
        rows = []
        for probe in PROBES:
            nw = probe in NW_PROBES
            n_params = {
                "raw": 0,
                "temperature": 1,
                "linear-conf": 2,
                "mlp-full": 32 * (1 + L) + 32 + 33,
                "mlp-conf": 32 * (1 + L) + 32 + 30,
                "mlp-shuffled": 32 * (1 + L) + 32 + 33,
            }.get(probe, 0)
            for metric in PROBE_METRICS:
                rows.append(
                    {
                        "probe": probe,
                        "bandwidth_rule": "cv-nll" if nw else "none",
                        "multiplier": 1.0 if nw else np.nan,
                        "metric": metric,
                        "value": probe_value(probe, metric, seed),
                        "n_params": n_params,
                    }
                )
        _csv(pd.DataFrame(rows), root / "probes" / f"{cell}.csv")
        prow, nulls = [], {}
        for feature in ("r_agg", "depth_var"):
            for method in ("residualised", "within-bin"):
                p = plan[method].pop(0) if plan[method] else round(0.1 + 0.8 * rng.uniform(), 4)
                ran = not np.isnan(p)
                null = rng.gamma(4.0, 0.004, N_PERM) if ran else np.empty(0)
                observed = float(np.quantile(null, 1 - p)) if ran else np.nan
                prow.append(
                    {
                        "feature": feature,
                        "method": method,
                        "ran": ran,
                        "n_bins_used": 8 if ran else 0,
                        "max_gap": round(0.1 + 0.01 * seed, 6) if ran else np.nan,
                        "weighted_gap": round(0.02 + 0.001 * seed, 6) if ran else np.nan,
                        "p_value": p,
                        "p_value_max": 0.5 if ran else np.nan,
                        "n_perm": N_PERM,
                        "reject": (p <= 0.05) if ran else pd.NA,
                    }
                )
                nulls[f"{method}/{feature}"] = null
                nulls[f"{method}/{feature}/max"] = null * 3 if ran else null
                nulls[f"{method}/observed_{feature}"] = np.array(observed)
        _csv(pd.DataFrame(prow), root / "permutation" / f"{cell}.csv")
        np.savez(root / "permutation" / f"{cell}.null.npz", **nulls)
        brow = []
        for probe in ("nw-conf", "ar-condcal"):
            shift = 0.001 if probe == "ar-condcal" else 0.0
            for m in SCOTT:
                for metric in PROBE_METRICS:
                    v = 0.03 + 0.01 * abs(np.log2(m)) + shift + 0.002 * seed
                    brow.append(
                        {
                            "probe": probe,
                            "rule": "scott",
                            "multiplier": m,
                            "metric": metric,
                            "value": round(v, 6),
                        }
                    )
            for metric in PROBE_METRICS:
                brow.append(
                    {
                        "probe": probe,
                        "rule": "cv-nll",
                        "multiplier": 1.0,
                        "metric": metric,
                        "value": round(0.031 + shift + 0.002 * seed, 6),
                    }
                )
                brow.append(
                    {
                        "probe": probe,
                        "rule": "oracle",
                        "multiplier": 0.5,
                        "metric": metric,
                        "value": round(0.028 + shift + 0.002 * seed, 6),
                    }
                )
            for m in CV_GRID:
                brow += [
                    {
                        "probe": probe,
                        "rule": "grid",
                        "multiplier": m,
                        "metric": metric,
                        "value": round(0.03 + 0.01 * abs(np.log2(m)) + shift + 0.002 * seed, 6),
                    }
                    for metric in PROBE_METRICS
                ]
                brow.append(
                    {
                        "probe": probe,
                        "rule": "cv-nll-curve",
                        "multiplier": m,
                        "metric": "cv_nll",
                        "value": round(0.45 + 0.02 * np.log(m) ** 2 + 0.001 * seed, 6),
                    }
                )
        _csv(pd.DataFrame(brow), root / "bandwidth" / f"{cell}.csv")
    return cells()


def write_planted(out: Path, cells: list[str]) -> None:
    """`planted.csv` as the planted_summary rule writes it: for each AttnRes cell and test, 8
    repetitions per delta with a rejection rate that grows with delta (the paper's test rejecting
    more often at every delta) and an ECE gain that grows with it."""
    from arcal.analysis.planted import COLUMNS, summarise

    frames = {}
    for i, cell in enumerate(c for c in cells if "/baseline/" not in c):
        rng = np.random.default_rng(i)
        rows = []
        for delta in (0.0, 0.5, 2.0):
            achieved = 0.05 * delta + 0.001 * i
            for rep in range(8):
                gain = 0.02 * delta + 0.002 * rng.normal()
                for method, boost in (("residualised", 0.0), ("within-bin", 0.3)):
                    reject = bool(rng.random() < 0.05 + boost + 0.2 * delta)
                    rows.append(("depth_var", delta, achieved, rep, method, True, 0.5, reject,
                                 "ar-condcal", 0.05, 0.05 - gain, gain))
        frames[cell] = pd.DataFrame(rows, columns=COLUMNS)
    table = summarise(frames) if frames else pd.DataFrame(columns=summarise({}).columns)
    _csv(table, out / "planted.csv")


def write_temporal(out: Path, cells: list[str]) -> None:
    """`temporal.csv` as the temporal_summary rule writes it, for the vit_demo cells: the
    ensemble slightly better calibrated than the final model."""
    from arcal.analysis.temporal import COLUMNS, temporal_rows

    frames = []
    for cell in (c for c in cells if "/vit_demo/" in c):
        seed = int(cell.rsplit("seed", 1)[1])
        final = pd.DataFrame({"metric": ["accuracy", "ece", "nll"],
                              "value": [0.85 + 0.01 * seed, 0.05, 0.40]})
        ensemble = final.assign(value=final["value"] * [1.01, 0.5, 0.9])
        perm = None if "/baseline/" in cell else pd.DataFrame(
            {"feature": ["r_agg", "depth_var", "r_agg"], "p_value": [0.3 + 0.1 * seed, 0.6, 0.01],
             "method": ["residualised", "residualised", "within-bin"]})
        frames.append(temporal_rows(cell, final, ensemble, perm))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    _csv(table, out / "temporal.csv")


ATTENTION_PROBES = ("raw", "nw-conf", "nw-attn_entropy", "linear-conf", "mlp-conf@A",
                    "mlp-full@A", "mlp-shuffled@A")


def write_attention(out: Path, cells: list[str]) -> None:
    """`attention_permutation.csv` and `attention_probes.csv` as the attention_summary rule
    writes them, for the baseline cells: attention entropy rejected by the paper's test in seed 0
    only, nw-attn_entropy within the nw-conf band."""
    import tempfile

    from arcal.audit.attention import write_summaries

    base = [c for c in cells if "/baseline/" in c]
    perm_paths, probe_paths = [], []
    with tempfile.TemporaryDirectory(prefix="attention-cells-") as tmp_dir:
        tmp = Path(tmp_dir)
        for cell in base:
            seed = int(cell.rsplit("seed", 1)[1])
            d = tmp / cell
            d.mkdir(parents=True, exist_ok=True)
            rows = [{"feature": "attn_entropy", "method": m, "ran": True, "n_bins_used": 9,
                     "max_gap": 0.08 + 0.01 * seed, "weighted_gap": 0.015 + 0.002 * seed,
                     "p_value": p, "p_value_max": 0.4, "n_perm": N_PERM, "reject": p <= 0.05}
                    for m, p in (("residualised", 0.3 + 0.1 * seed),
                                 ("within-bin", 0.01 if seed == 0 else 0.2))]
            pd.DataFrame(rows).to_csv(d / "permutation.csv", index=False)
            rows = []
            for j, probe in enumerate(ATTENTION_PROBES):
                nw = probe.startswith("nw-")
                for metric in ("ece", "tertile_ece_attn_entropy", "tertile_ece_attn_entropy_low",
                               "tertile_ece_attn_entropy_mid", "tertile_ece_attn_entropy_high",
                               "smooth_ece", "nll", "brier"):
                    rows.append({"probe": probe, "bandwidth_rule": "cv-nll" if nw else "none",
                                 "multiplier": 1.0 if nw else np.nan, "metric": metric,
                                 "value": round(0.02 + 0.001 * j + 0.002 * seed
                                                + (0.4 if metric in ("nll", "brier") else 0), 6),
                                 "n_params": 2 if nw else 100})
            pd.DataFrame(rows).to_csv(d / "probes.csv", index=False)
            perm_paths.append(d / "permutation.csv")
            probe_paths.append(d / "probes.csv")
        write_summaries(base, {"attention_permutation.csv": perm_paths,
                               "attention_probes.csv": probe_paths},
                        {"attention_permutation.csv": out / "attention_permutation.csv",
                         "attention_probes.csv": out / "attention_probes.csv"})
