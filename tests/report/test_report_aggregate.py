"""Aggregation of per-cell results into the summary tables, on the synthetic results tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import report_synthetic as syn
from arcal.report.aggregate import (
    SUMMARY_FILES,
    MissingInputError,
    aggregate,
    load_nulls,
    parse_cell,
    seed_stats,
)


def test_every_summary_file_is_written(summary_dir: Path) -> None:
    for name in SUMMARY_FILES:
        assert (summary_dir / name).is_file(), name
    assert not list(summary_dir.glob(".*.tmp")), "temporary files left behind"


def test_metrics_keep_every_cell_value(summary_dir: Path) -> None:
    df = pd.read_csv(summary_dir / "metrics.csv")
    assert len(df) == len(syn.cells()) * len(syn.METRIC_BASE)
    for row in df.sample(40, random_state=0).itertuples(index=False):
        assert row.value == pytest.approx(
            syn.metric_value(row.metric, row.dataset, row.variant, row.seed)
        )


def test_seed_mean_and_sample_std(summary_dir: Path) -> None:
    df = pd.read_csv(summary_dir / "metrics.csv")
    s = seed_stats(df[df["metric"] == "accuracy"], ["dataset", "substrate", "variant"])
    row = s[
        (s["dataset"] == "cifar10") & (s["substrate"] == "vit_demo") & (s["variant"] == "full")
    ].iloc[0]
    assert row["mean"] == pytest.approx(0.80 + 0.1 + 0.001 + 0.01)
    assert row["std"] == pytest.approx(0.01)  # sample std (ddof = 1) of 0, 0.01, 0.02 offsets
    assert row["n"] == 3


def test_routing_tables_skip_the_baseline(summary_dir: Path) -> None:
    for name in (
        "probes.csv",
        "permutation.csv",
        "bandwidth.csv",
        "capacity.csv",
        "routing_profiles.csv",
    ):
        df = pd.read_csv(summary_dir / name)
        assert not df.empty and set(df["variant"]) == {"block", "full"}, name
    rel = pd.read_csv(summary_dir / "reliability.csv")
    assert set(rel.loc[rel["variant"] == "baseline", "feature"]) == {"all"}
    cells = pd.read_csv(summary_dir / "cells.csv")
    assert (cells.loc[cells["variant"] == "baseline", "n_consumers"] == 0).all()


def test_capacity_holds_the_four_audit_probes_with_params(summary_dir: Path) -> None:
    cap = pd.read_csv(summary_dir / "capacity.csv")
    assert set(cap["probe"]) == {"linear-conf", "mlp-conf", "mlp-full", "mlp-shuffled"}
    full = cap[(cap["probe"] == "mlp-full") & (cap["variant"] == "block")]
    assert set(full["n_params"]) == {32 * 5 + 32 + 33}


def test_permutation_rejections_and_bh_on_known_p_values(summary_dir: Path) -> None:
    from statsmodels.stats.multitest import multipletests

    perm = pd.read_csv(summary_dir / "permutation.csv")
    assert len(perm) == 2 * 2 * 2 * 3 * 2 * 2  # datasets, substrates, variants, seeds, features, tests
    for method, small, mid, not_run in (
        ("residualised", syn.N_SMALL_P, syn.N_MID_P, syn.N_NOT_RUN),
        ("within-bin", syn.N_SMALL_P_PAPER, syn.N_MID_P_PAPER, 0),
    ):
        sub = perm[perm["method"] == method]
        ran = sub[sub["ran"]]
        assert len(sub) - len(ran) == not_run
        # a test that did not run is neither a rejection nor in the BH family
        assert sub.loc[~sub["ran"], ["reject", "reject_bh"]].isna().all().all()
        assert int(ran["reject"].sum()) == small + mid
        assert int(ran["reject_bh"].sum()) == small
        ref_reject = multipletests(ran["p_value"], alpha=0.05, method="fdr_bh")[0]
        np.testing.assert_array_equal(ran["reject_bh"].astype(bool), ref_reject)
    assert (perm["bh_alpha"] == 0.05).all()


def test_reliability_pools_seeds_and_matches_the_dumps(
    results_tree: tuple[Path, list[str]], summary_dir: Path
) -> None:
    root, _ = results_tree
    rel = pd.read_csv(summary_dir / "reliability.csv")
    grp = rel[
        (rel["dataset"] == "fashion-mnist")
        & (rel["substrate"] == "swin_demo")
        & (rel["variant"] == "full")
    ]
    assert grp[grp["feature"] == "all"]["n"].sum() == 3 * syn.N_TEST
    for t in (1, 2, 3):
        assert (
            grp[(grp["feature"] == "depth_var") & (grp["tertile"] == t)]["n"].sum()
            == 3 * syn.N_TEST // 3
        )
    edges = np.linspace(0, 1, 16)
    high = np.zeros(15, dtype=int)  # bin counts of each seed's top third by depth_var, pooled
    for seed in syn.SEEDS:
        with np.load(root / "dumps" / f"fashion-mnist/swin_demo/full/seed{seed}" / "test.npz") as d:
            p = np.exp(d["logits"].astype(float))
            c = (p / p.sum(axis=1, keepdims=True)).max(axis=1)
            top = np.argsort(d["depth_var"], kind="stable")[-syn.N_TEST // 3 :]
            high += np.bincount(
                np.clip(np.searchsorted(edges, c[top], side="right") - 1, 0, 14), minlength=15
            )
    got = (
        grp[(grp["feature"] == "depth_var") & (grp["tertile"] == 3)]
        .sort_values("bin")["n"]
        .to_numpy()
    )
    np.testing.assert_array_equal(got, high)
    conf, correct = [], []
    for seed in syn.SEEDS:
        with np.load(root / "dumps" / f"fashion-mnist/swin_demo/full/seed{seed}" / "test.npz") as d:
            p = np.exp(d["logits"].astype(float))
            p /= p.sum(axis=1, keepdims=True)
            conf.append(p.max(axis=1))
            correct.append(p.argmax(axis=1) == d["labels"])
    c, z = np.concatenate(conf), np.concatenate(correct)
    b = np.clip(
        np.searchsorted(np.linspace(0, 1, 16), c, side="right") - 1, 0, 14
    )  # left-closed bins
    k = int(np.bincount(b).argmax())
    row = grp[(grp["feature"] == "all") & (grp["bin"] == k)].iloc[0]
    assert row["n"] == int((b == k).sum())
    assert row["acc"] == pytest.approx(z[b == k].mean())
    assert row["conf"] == pytest.approx(c[b == k].mean())


def test_nulls_keep_every_test(results_tree: tuple[Path, list[str]], summary_dir: Path) -> None:
    root, _ = results_tree
    nulls = load_nulls(summary_dir / "permutation_nulls.npz")
    assert len(nulls) == 2 * 2 * 2 * 3 * 2 * 2 * 3  # ... features, tests, (null, max, observed)
    cell = "cifar10/swin_demo/block/seed1"
    with np.load(root / "permutation" / f"{cell}.null.npz") as z:
        for key in ("residualised/r_agg", "within-bin/r_agg/max", "residualised/observed_depth_var"):
            np.testing.assert_array_equal(nulls[f"{cell}/{key}"], z[key])


def test_routing_profiles_drop_nan_padding(summary_dir: Path) -> None:
    prof = pd.read_csv(summary_dir / "routing_profiles.csv")
    assert prof["alpha_mean"].notna().all()
    one = prof[
        (prof["dataset"] == "cifar10")
        & (prof["substrate"] == "vit_demo")
        & (prof["variant"] == "full")
        & (prof["seed"] == 0)
    ]
    np.testing.assert_allclose(one.groupby("consumer_index")["alpha_mean"].sum(), 1.0)
    assert one.groupby("consumer_index").size().tolist() == [2, 3, 4, 5, 6, 7]


def test_missing_input_names_the_file(results_tree: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, _ = results_tree
    with pytest.raises(MissingInputError, match="seed7"):
        aggregate(root, ["cifar10/vit_demo/full/seed7"], tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written when an input is missing"


def test_bad_cells_are_rejected(results_tree: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, cells = results_tree
    with pytest.raises(ValueError, match="seed"):
        parse_cell("cifar10/vit_demo/full")
    with pytest.raises(ValueError, match="duplicates"):
        aggregate(root, [cells[0], cells[0]], tmp_path)
    with pytest.raises(ValueError, match="empty"):
        aggregate(root, [], tmp_path)


def test_cli_reproduces_the_library_bytes(
    results_tree: tuple[Path, list[str]], summary_dir: Path, tmp_path: Path
) -> None:
    root, cells = results_tree
    cells_file = tmp_path / "cells.txt"
    cells_file.write_text("# grid\n" + "\n".join(reversed(cells)) + "\n\n")
    out = tmp_path / "summary"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "arcal.report.aggregate",
            "--results",
            str(root),
            "--cells-file",
            str(cells_file),
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    for name in SUMMARY_FILES:
        assert (out / name).read_bytes() == (summary_dir / name).read_bytes(), name
