"""The settings of one training run (`TrainConfig`) and the rules they must follow.

Kept free of torch so that the workflow checks every cell of a grid against the same rules when
it builds the DAG (`arcal.checks`, milliseconds, dry-runs included), before the training job that
checks them again has waited in a queue.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

from arcal.grid import VARIANTS


class Problem(NamedTuple):
    """A field that breaks its rule. The rule names the fields it compares the value with as
    `{field}` placeholders, filled in by whoever reports it (`compared` lists them)."""

    name: str
    rule: str
    compared: tuple[str, ...] = ()

    def message(self, show: Callable[[str], str]) -> str:
        """`show(name)` renders a field with its value, e.g. as the config key it comes from."""
        return f"{show(self.name)}: " + self.rule.format(**{c: show(c) for c in self.compared})


@dataclass
class TrainConfig:
    """Everything one training run depends on. `None` for crop_padding/flip = dataset default."""

    dataset: str = "fashion-mnist"
    kind: str | None = None  # loader (arcal.data.KINDS); defaults to `dataset`
    data_root: str | None = None
    download: bool = False
    # splits.npz of the data stage; None = all official train / test images
    splits: str | None = None
    substrate: str = "vit_demo"
    variant: str = "baseline"
    block_size: int = 4
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None  # local timm checkpoint to fine-tune from
    seed: int = 0
    epochs: int = 3
    batch_size: int = 128
    eval_batch_size: int = 500
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    min_lr: float = 1e-5
    drop_path: float = 0.0
    label_smoothing: float = 0.0  # a calibration study: no smoothing by default
    crop_padding: int | None = None
    flip: bool | None = None
    snapshot_stride: int = 0
    keep_checkpoint: bool = False  # keep checkpoint.pt (optimiser state) after the run finishes
    device: str = "auto"
    compile: bool = False
    threads: int | None = None

    def problems(self) -> list[Problem]:
        """Every field that breaks its rule. Whether a CUDA device is visible is `validate`'s
        question: it needs torch, and a login node has no GPU anyway."""
        found: list[Problem] = []

        def need(ok: bool, name: str, rule: str, *compared: str) -> None:
            if not ok:
                found.append(Problem(name, rule, compared))

        need(self.variant in VARIANTS, "variant", f"must be one of {', '.join(VARIANTS)}")
        for name in ("epochs", "batch_size", "eval_batch_size", "block_size"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1, name, "must be an integer >= 1")
        need(isinstance(self.seed, int) and self.seed >= 0, "seed", "must be an integer >= 0")
        need(self.lr > 0 and math.isfinite(self.lr), "lr", "must be a positive finite number")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
        need(
            self.warmup_epochs <= self.epochs,
            "warmup_epochs",
            "is longer than training, {epochs}; lower the warm-up or raise epochs",
            "epochs",
        )
        need(self.min_lr >= 0, "min_lr", "must be >= 0")
        need(
            self.min_lr <= self.lr,
            "min_lr",
            "is above the peak learning rate {lr}; the cosine schedule decays from lr to min_lr, "
            "so lower min_lr",
            "lr",
        )
        need(0 <= self.drop_path < 1, "drop_path", "must lie in [0, 1)")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must lie in [0, 1)")
        need(
            self.crop_padding is None or self.crop_padding >= 0,
            "crop_padding",
            "must be >= 0 or null (dataset default)",
        )
        need(self.snapshot_stride >= 0, "snapshot_stride", "must be >= 0 (0 = no snapshots)")
        need(self.device in ("auto", "cpu", "cuda"), "device", "must be auto, cpu or cuda")
        need(
            self.threads is None or self.threads >= 1,
            "threads",
            "must be >= 1 or null (torch default)",
        )
        need(
            isinstance(self.model_overrides, dict),
            "model_overrides",
            "must be a mapping of timm keyword arguments",
        )
        return found

    def validate(self, check_device: bool = True) -> None:
        """Raise ValueError naming the first bad field. `check_device=False` skips whether a
        CUDA device is visible (a login node checking a cluster run has none)."""
        found = self.problems()
        if check_device and self.device == "cuda":
            import torch  # only a run that asks for the GPU needs torch to check it

            if not torch.cuda.is_available():
                rule = "cuda requested but no CUDA device is visible; use device: auto or cpu"
                found.append(Problem("device", rule))
        if found:
            raise ValueError(found[0].message(lambda f: f"TrainConfig.{f}={getattr(self, f)!r}"))

    @classmethod
    def from_dict(cls, d: dict[str, Any], check_device: bool = True) -> "TrainConfig":
        """Build from a mapping, rejecting unknown keys (a typo must not fall back to a default)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig field(s) {unknown}; valid fields: {', '.join(sorted(names))}"
            )
        cfg = cls(**d)
        cfg.validate(check_device)
        return cfg
