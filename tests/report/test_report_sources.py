"""The sources table (paper/templates/sources.tex.j2): sources per routed consumer of every cell,
read from the routing profiles, checked on the real consumer layouts of Swin-T and DeiT-S."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from arcal.models import create_model
from arcal.report.tables import render_string, sources_context


def profile_rows(substrate: str, variant: str, seeds=(0, 1), **kw) -> list[dict]:
    """routing_profiles.csv rows of a model's routed consumers, as the aggregate stage writes them."""
    model = create_model(substrate, variant, 10, 32, 3, **kw)
    routed = [m for m in model.attnres if m.n_sources > 1]
    return [
        {"dataset": "cifar10", "substrate": substrate, "variant": variant, "seed": seed, "consumer_index": i,
         "consumer": m.name, "n_sources": m.n_sources, "source": s, "alpha_mean": 1 / m.n_sources}
        for seed in seeds for i, m in enumerate(routed) for s in range(m.n_sources)
    ]


def write(tmp_path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(tmp_path / "routing_profiles.csv", index=False)
    return tmp_path


def test_sources_table_counts_blocks_and_two_source_consumers(tmp_path: Path) -> None:
    summary = write(tmp_path, profile_rows("swin_t", "block") + profile_rows("deit_s", "full", seeds=(0,)))
    rows = {(r["substrate"], r["variant"]): r for r in sources_context(summary)["rows"]}
    swin = rows[("swin_t", "block")]  # stages of 4, 4, 12, 4 sub-layers, blocks of 2, 2, 4, 2
    assert (swin["n_consumers"], swin["blocks"], swin["min"], swin["max"], swin["two"]) == (24, "2-2-3-2", 2, 4, 10)
    assert swin["mean"] == pytest.approx((2 * 10 + 3 * 10 + 4 * 4) / 24)
    deit = rows[("deit_s", "full")]  # every sub-layer a block: 2 .. 25 sources
    assert (deit["n_consumers"], deit["blocks"], deit["min"], deit["max"], deit["two"]) == (24, "24", 2, 25, 1)
    text = render_string("sources", summary)
    assert r"CIFAR-10 & Swin-T & Block & 24 & 2-2-3-2 & 2--4 & 2.75 & 10 \\" in text


def test_uniform_swin_block_size_shows_single_block_stages(tmp_path: Path) -> None:
    summary = write(tmp_path, profile_rows("swin_t", "block", min_stage_blocks=1))
    (row,) = sources_context(summary)["rows"]
    assert (row["blocks"], row["two"]) == ("1-1-3-1", 16)


def test_seeds_with_different_layouts_are_an_error(tmp_path: Path) -> None:
    rows = profile_rows("swin_t", "block", seeds=(0,)) + profile_rows("swin_t", "block", seeds=(1,), min_stage_blocks=1)
    with pytest.raises(ValueError, match="seeds of cifar10/swin_t/block route over different sources"):
        sources_context(write(tmp_path, rows))
