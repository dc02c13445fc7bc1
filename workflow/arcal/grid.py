"""The study grid: which (dataset, substrate, variant, seed) cells a config asks for.

The Snakefile builds every path from `cells(config)`; keeping the logic here makes it
importable and testable without Snakemake. A cell's id is the path fragment
`{dataset}/{substrate}/{variant}/seed{seed}` used by every stage.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "block", "full")
ROUTED_VARIANTS = ("block", "full")


@dataclass(frozen=True, order=True)
class Cell:
    """One trained model: a dataset, a substrate (config name), an AttnRes variant and a seed."""

    dataset: str
    substrate: str
    variant: str
    seed: int

    @property
    def id(self) -> str:
        return f"{self.dataset}/{self.substrate}/{self.variant}/seed{self.seed}"

    @property
    def routed(self) -> bool:
        """Whether the model has a routing trace (the baseline has none)."""
        return self.variant in ROUTED_VARIANTS

    @classmethod
    def parse(cls, cell_id: str) -> "Cell":
        parts = cell_id.strip("/").split("/")
        if len(parts) != 4 or not parts[3].startswith("seed") or not parts[3][4:].isdigit():
            raise ValueError(
                f"cell id {cell_id!r} is not of the form '<dataset>/<substrate>/<variant>/seed<N>'"
            )
        return cls(parts[0], parts[1], parts[2], int(parts[3][4:]))


def skipped_arms(config: dict) -> dict[str, str]:
    """Arms left out of the grid, with the reason (e.g. a fine-tuning arm without a checkpoint)."""
    reasons = {}
    for name, arm in config["arms"].items():
        if not arm.get("enabled", True):
            reasons[name] = "disabled in the config (arms.%s.enabled: false)" % name
            continue
        for dataset, substrate in arm["cells"]:
            spec = config["substrates"][substrate]
            if spec.get("requires_checkpoint") and not spec.get("checkpoint"):
                reasons[name] = (
                    f"substrate {substrate!r} fine-tunes a pretrained backbone but "
                    f"substrates.{substrate}.checkpoint is not set; point it at a local timm "
                    "checkpoint file to run this arm"
                )
                break
    return reasons


def cells(config: dict) -> list[Cell]:
    """All cells of all enabled arms, deduplicated and sorted."""
    check_references(config)
    skip = skipped_arms(config)
    found = set()
    for name, arm in config["arms"].items():
        if name in skip:
            continue
        for dataset, substrate in arm["cells"]:
            for variant in arm["variants"]:
                for seed in arm["seeds"]:
                    found.add(Cell(dataset, substrate, variant, int(seed)))
    return sorted(found)


def routed_cells(config: dict) -> list[Cell]:
    """Cells with a routing trace: the ones routing analyses (probes, tests, sweeps) run on."""
    return [c for c in cells(config) if c.routed]


def datasets(config: dict) -> list[str]:
    return sorted({c.dataset for c in cells(config)})


def temporal_cells(config: dict) -> list[Cell]:
    """Cells of the temporal pilot: trained with snapshots, dumped as a snapshot ensemble."""
    pilot = config.get("temporal", {})
    pairs = {tuple(p) for p in pilot.get("cells", [])}
    if not pairs or not pilot.get("enabled", True):
        return []
    return [c for c in cells(config) if (c.dataset, c.substrate) in pairs]


def dropped_temporal_cells(config: dict) -> dict[str, str]:
    """Pairs of `temporal.cells` that yield no cell, with the reason: every arm holding them is
    disabled or skipped (the pilot runs without them)."""
    pilot = config.get("temporal", {})
    if not pilot.get("enabled", True):
        return {}
    active = {(c.dataset, c.substrate) for c in cells(config)}
    skipped = skipped_arms(config)
    out = {}
    for pair in map(tuple, pilot.get("cells", [])):
        if pair not in active:
            arms = [
                name for name, arm in config["arms"].items() if pair in map(tuple, arm["cells"])
            ]
            out["/".join(pair)] = (
                f"temporal.cells names {list(pair)}, but its arm(s) {', '.join(arms)} are left out "
                f"({'; '.join(skipped[a] for a in arms)}), so the temporal pilot runs without it"
            )
    return out


def check_references(config: dict) -> None:
    """Every arm names known datasets, substrates and variants; errors say which key is wrong."""
    for name, arm in config["arms"].items():
        for pair in arm["cells"]:
            dataset, substrate = pair
            if dataset not in config["datasets"]:
                raise ValueError(
                    f"arms.{name}.cells names dataset {dataset!r}, which is not defined under "
                    f"'datasets' (defined: {sorted(config['datasets'])})"
                )
            if substrate not in config["substrates"]:
                raise ValueError(
                    f"arms.{name}.cells names substrate {substrate!r}, which is not defined under "
                    f"'substrates' (defined: {sorted(config['substrates'])})"
                )
        for variant in arm["variants"]:
            if variant not in VARIANTS:
                raise ValueError(
                    f"arms.{name}.variants has {variant!r}; allowed: {', '.join(VARIANTS)}"
                )
    pilot = config.get("temporal", {})
    if not pilot.get("enabled", True):
        return  # a disabled pilot's cells are not used, so not checked
    for pair in pilot.get("cells", []):
        if tuple(pair) not in {tuple(p) for arm in config["arms"].values() for p in arm["cells"]}:
            raise ValueError(
                f"temporal.cells names {pair!r}, which is in no arm's cells; add it to an arm or "
                "remove it (or set temporal.enabled: false)"
            )


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of `base` with `override` merged in, recursing into nested dicts."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def setting_source(config: dict, cell: Cell, key: str) -> str:
    """The config key a cell's training setting `key` comes from: the substrate's `train`
    overrides the dataset's, which overrides the global `train` (`train_settings`)."""
    if key == "snapshot_stride" and cell in temporal_cells(config):
        return "temporal.snapshot_stride"
    if key in config["substrates"][cell.substrate].get("train", {}):
        return f"substrates.{cell.substrate}.train.{key}"
    if key in config["datasets"][cell.dataset].get("train", {}):
        return f"datasets.{cell.dataset}.train.{key}"
    return f"train.{key}"


def train_settings(config: dict, cell: Cell) -> dict[str, Any]:
    """Training options of one cell: global `train`, then dataset, then substrate overrides."""
    dataset = config["datasets"][cell.dataset]
    substrate = config["substrates"][cell.substrate]
    settings = deep_merge(config["train"], dataset.get("train", {}))
    settings = deep_merge(settings, substrate.get("train", {}))
    if cell in temporal_cells(config):
        settings["snapshot_stride"] = config["temporal"]["snapshot_stride"]
    settings.update(
        dataset=cell.dataset,
        kind=dataset.get("kind", cell.dataset),
        data_root=dataset.get("root"),
        download=dataset.get("download", False),
        substrate=substrate["arch"],
        model_overrides=dict(substrate.get("model", {})),
        variant=cell.variant,
        seed=cell.seed,
        init_checkpoint=substrate.get("checkpoint"),
    )
    return settings


def split_settings(config: dict, dataset: str) -> dict[str, Any]:
    """How the dataset is split: sizes of the training subset, calibration and test halves."""
    spec = config["datasets"][dataset]
    return {
        "dataset": dataset,
        "kind": spec.get("kind", dataset),
        "root": spec.get("root"),
        "download": spec.get("download", False),
        "n_train": spec.get("n_train"),
        "n_calib": spec["n_calib"],
        "n_test": spec["n_test"],
        "seed": config["split_seed"],
    }
