"""Train one cell: substrate x AttnRes variant x seed on one dataset.

The loop is deliberately plain (nanoGPT style): resident tensors, a seeded batch order and
augmentation, AdamW with a per-step cosine schedule, bf16 autocast on the GPU and fp32 on the CPU.
Evaluation (the per-epoch history and the dumps) always runs in float32. Routing capture stays off
while training.

Outputs in the run folder `out_dir`:
* `checkpoint.pt` after every epoch but the last (atomic): model, optimiser, RNG states (torch,
  CUDA, data generator), history, the config and the run's *weights key*. The key is a hash of
  everything that determines the weights: the training settings (not device, threads, paths),
  the training images and labels, the source of the model code and of the training loop and
  augmentation, and the torch and timm versions. A restarted run resumes from a checkpoint with
  its own key and ends with the same weights as an uninterrupted one (bit-identical on the CPU);
  a checkpoint with another key is removed, with a warning saying what changed, and training
  starts from scratch. A finished run deletes its checkpoint (`keep_checkpoint: true` keeps it,
  marked finished); a finished run's checkpoint is never resumed, so rerunning a finished run
  (Snakemake's `--forcerun train`) retrains it.
* `snapshots/epoch{E}.pt` every `snapshot_stride` epochs (temporal pilot), each with the weights
  key; they collect in `snapshots.partial/` while training and move to `snapshots/` (empty when
  there are none) when the run finishes.
* `model.pt` (weights, `arcal_config`, train config, weights key, snapshot epochs, epoch, test
  accuracy, normalisation) and `history.csv` (epoch, train_loss, train_acc, test_acc, test_ece,
  test_nll, lr, seconds).

Command line:
    python -m arcal.train --config run.yaml --out results/train/<cell> [--set key=value ...]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

import arcal
from arcal.data import Batches, ImageDataset, augment, load_dataset, load_splits, normalize
from arcal.io import atomic_torch_save, atomic_write_csv, git_commit
from arcal.routing import RoutingBatch
from arcal.train_config import TrainConfig

log = logging.getLogger(__name__)

HISTORY_COLUMNS = "epoch train_loss train_acc test_acc test_ece test_nll lr seconds".split()
PARTIAL_SNAPSHOTS = "snapshots.partial"  # snapshots of a run in progress (see the docstring)
# Fields that do not determine the trained weights, so not part of the weights key: where and
# how fast it runs, and where the data comes from (its content is hashed instead).
RESUMABLE_FIELDS = (
    "device", "compile", "threads", "eval_batch_size", "data_root", "download", "splits",
    "keep_checkpoint",
)
# Code that determines the weights besides arcal.models (hashed whole): the training loop, its
# schedule, optimiser groups, precision and the augmentation and normalisation of the inputs.
WEIGHT_CODE = (
    "arcal.train._train", "arcal.train._step", "arcal.train.lr_at", "arcal.train.param_groups",
    "arcal.train.build_model", "arcal.train.autocast", "arcal.data.augment",
    "arcal.data.normalize", "arcal.data.Batches", "arcal.data.channel_stats",
)


class CheckpointError(RuntimeError):
    """A checkpoint or model file is corrupt, truncated or from a different configuration."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    return torch.device(
        "cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu"
    )


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms on the CPU for the duration of a stage (restored afterwards).

    Without the NaN fill of every new tensor that deterministic mode adds by default: it only
    changes programs that read memory they never wrote (PyTorch's note on
    `torch.utils.deterministic.fill_uninitialized_memory`), and it costs about 2% of a demo
    training step. The same-seed tests check that training stays bit-for-bit reproducible.
    """
    before = torch.are_deterministic_algorithms_enabled()
    fill_before = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(before or device.type == "cpu")
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)
        torch.utils.deterministic.fill_uninitialized_memory = fill_before


def autocast(device: torch.device) -> torch.autocast:
    """Training precision: bf16 autocast on the GPU; a disabled context (fp32) on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Evaluation precision: float32 throughout, whatever the caller enabled.

    Autocast is off and, on the GPU, cuDNN convolutions and matrix products do not use TF32
    (both restored afterwards). Logits computed under bf16 carry bf16 precision even when stored
    as float32: top logits tie and ECE moves in the fourth decimal, which a calibration study
    quotes.
    """
    with torch.autocast(device.type, enabled=False):
        if device.type != "cuda":
            yield
            return
        conv_tf32, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = conv_tf32
            torch.set_float32_matmul_precision(matmul)


# ----------------------------------------------------------------------------- evaluation


@dataclass
class Prediction:
    """Logits (N, K) float32 of a fixed-order pass over images, and their routing summaries."""

    logits: np.ndarray
    routing: RoutingBatch | None


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    x: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    device: torch.device,
    capture: bool = False,
) -> Prediction:
    """Evaluate `model` on uint8 images `x` in order (eval mode), optionally capturing routing.

    The single evaluation loop of arcal: training history and dumps both use it. It runs in
    float32 (`full_precision`) even where training uses bf16 autocast.
    """
    from arcal.models import routing_capture

    was_training = model.training
    model.eval()
    parts = []
    with routing_capture(model) if capture else contextlib.nullcontext() as trace:
        with full_precision(device):
            for i in range(0, len(x), batch_size):
                parts.append(
                    model(normalize(x[i : i + batch_size].to(device), mean, std)).float().cpu()
                )
    model.train(was_training)
    logits = torch.cat(parts).numpy() if parts else np.zeros((0, 0), np.float32)
    return Prediction(logits=logits, routing=trace.result() if capture else None)


def score(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, 15-bin top-label ECE and NLL of logits against labels."""
    from arcal.calibration.metrics import ece

    logp = torch.log_softmax(torch.from_numpy(logits).double(), dim=1).numpy()
    pred = logp.argmax(1)
    correct = (pred == labels).astype(np.float64)
    conf = np.exp(logp.max(1))
    return {
        "acc": float(correct.mean()),
        "ece": float(ece(conf, correct, n_bins=15)),
        "nll": float(-logp[np.arange(len(labels)), labels].mean()),
    }


# ----------------------------------------------------------------------------- training


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices only; none on 1-D parameters (pseudo-queries, norm
    gains, biases) or on what the model lists in `no_weight_decay()` (position embeddings, tokens).
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, total: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warmup over `warmup` steps, then cosine decay from `lr` to `min_lr` at `total`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_model(cfg: TrainConfig, ds: ImageDataset) -> torch.nn.Module:
    from arcal.models import create_model

    return create_model(
        cfg.substrate,
        cfg.variant,
        num_classes=ds.num_classes,
        img_size=ds.img_size,
        in_chans=ds.in_chans,
        block_size=cfg.block_size,
        drop_path_rate=cfg.drop_path,
        **cfg.model_overrides,
    )


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint; CheckpointError if it is corrupt or not a checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it "
            "to restart training from scratch"
        ) from exc
    if not isinstance(ckpt, dict) or "train_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(
            f"{path} is not an arcal training checkpoint; delete it to restart training from "
            "scratch"
        )
    return ckpt


def _sha256(*chunks: Any) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def code_digests() -> dict[str, str]:
    """sha256 of the source of every arcal.models module (its C kernels included) and of each
    object in WEIGHT_CODE."""
    import importlib

    from arcal import models

    out = {
        f"arcal/models/{f.name}": _sha256(f.read_bytes())
        for f in sorted(Path(models.__file__).parent.iterdir()) if f.suffix in (".py", ".c")
    }
    for name in WEIGHT_CODE:
        module, attr = name.rsplit(".", 1)
        source = inspect.getsource(getattr(importlib.import_module(module), attr))
        out[name] = _sha256(source.encode())
    return out


def weights_key(
    cfg: TrainConfig, x_train: torch.Tensor, y_train: torch.Tensor
) -> tuple[str, dict[str, Any]]:
    """The run's weights key and the parts it hashes: the settings that determine the weights,
    the training images and labels, the fine-tuning checkpoint, the code (`code_digests`) and the
    torch and timm versions. Runs with equal keys train the same weights."""
    import timm

    init = None
    if cfg.init_checkpoint:
        with open(cfg.init_checkpoint, "rb") as f:
            init = hashlib.file_digest(f, "sha256").hexdigest()
    parts = {
        "config": {
            k: v for k, v in dataclasses.asdict(cfg).items() if k not in RESUMABLE_FIELDS
        },
        "data": _sha256(x_train.contiguous().numpy(), y_train.contiguous().numpy()),
        "init_checkpoint": init,
        "code": code_digests(),
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
    }
    return _sha256(json.dumps(parts, sort_keys=True, default=str).encode())[:16], parts


def _key_changes(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """What differs between the key parts of a checkpoint and those of this run, for the log."""
    changes = []
    old, new = theirs.get("config", {}), ours["config"]
    changes += [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]
    if theirs.get("data") != ours["data"]:
        changes.append("the training images or labels")
    if theirs.get("init_checkpoint") != ours["init_checkpoint"]:
        changes.append("the fine-tuning checkpoint")
    old_code, new_code = theirs.get("code", {}), ours["code"]
    code = sorted(k for k in set(old_code) | set(new_code) if old_code.get(k) != new_code.get(k))
    if code:
        changes.append("the code of " + ", ".join(code))
    old_v, new_v = theirs.get("versions", {}), ours["versions"]
    changes += [f"{k} {old_v.get(k)} -> {new_v[k]}" for k in new_v if old_v.get(k) != new_v[k]]
    return changes


def train(cfg: TrainConfig, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Train (or resume) one run into `out_dir`; return the final summary (epoch, test metrics)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with deterministic(device):
        return _train(cfg, Path(out_dir), device)


# fmt: off
def _train(cfg: TrainConfig, out: Path, device: torch.device) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(cfg.dataset, cfg.data_root, cfg.download, cfg.kind)
    tr_idx, te_idx = _split_indices(cfg, ds)
    x_tr, y_tr = ds.x_train[tr_idx], ds.y_train[tr_idx]
    key, key_parts = weights_key(cfg, x_tr, y_tr)
    x_tr, y_tr = x_tr.to(device), y_tr.to(device)
    x_te, y_te = ds.x_test[te_idx].to(device), ds.y_test[te_idx].numpy()
    crop = ds.default_crop_padding if cfg.crop_padding is None else cfg.crop_padding
    flip = ds.natural if cfg.flip is None else cfg.flip

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = build_model(cfg, ds).to(device)
    # One fused kernel per step instead of a loop over parameters (2 to 5 ms off an isolated
    # CPU step of the demo models); other devices keep the default implementation.
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, **fused)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order and augmentation
    batches = Batches(x_tr, y_tr, cfg.batch_size, gen, drop_last=True)
    n_steps = len(batches)
    total, warmup = cfg.epochs * n_steps, round(cfg.warmup_epochs * n_steps)
    start_epoch, history = _resume(out, cfg, key, key_parts, model, opt, gen, device)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %s/%s, seed %d, %s, %d threads, %d parameters, %d images, %d steps/epoch",
             out, cfg.substrate, cfg.variant, cfg.seed, device, torch.get_num_threads(), n_params,
             len(x_tr), n_steps)
    fwd = torch.compile(model) if cfg.compile else model
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        losses, n_correct, n_seen = [], torch.zeros((), device=device), 0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=None)
        for it, (xb, yb) in enumerate(bar):
            lr = lr_at(epoch * n_steps + it, total, warmup, cfg.lr, cfg.min_lr)
            for g in opt.param_groups:
                g["lr"] = lr
            loss, correct = _step(fwd, opt, normalize(augment(xb, gen, crop, flip), ds.mean, ds.std), yb,
                                  cfg.label_smoothing, device)
            losses.append(loss)
            n_correct, n_seen = n_correct + correct, n_seen + len(yb)
            if (it + 1) % 20 == 0 or it + 1 == n_steps:  # one device sync per 20 steps
                recent = _check_finite(losses, epoch, n_steps, f"{out} (peak lr {cfg.lr:g})")
                bar.set_postfix(loss=f"{recent:.3f}", acc=f"{n_correct.item() / n_seen:.3f}")
        pred = predict(model, x_te, ds.mean, ds.std, cfg.eval_batch_size, device)
        test = score(pred.logits, y_te)
        history.append({
            "epoch": epoch + 1, "train_loss": torch.stack(losses).mean().item(),
            "train_acc": n_correct.item() / n_seen, "test_acc": test["acc"],
            "test_ece": test["ece"], "test_nll": test["nll"], "lr": lr,
            "seconds": time.perf_counter() - t0,
        })
        log.info("%s: %s", out, ", ".join(f"{k} {v:.4g}" for k, v in history[-1].items()))
        if epoch + 1 in snapshot_epochs(cfg):
            snapshot = model_record(model, cfg, ds, epoch + 1, test["acc"], key)
            atomic_torch_save(out / PARTIAL_SNAPSHOTS / f"epoch{epoch + 1}.pt", snapshot)
        if epoch + 1 < cfg.epochs or cfg.keep_checkpoint:  # the last one only if asked
            atomic_torch_save(out / "checkpoint.pt", {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "rng": _rng_state(gen, device), "epoch": epoch + 1, "history": history,
                "train_config": dataclasses.asdict(cfg), "key": key, "key_parts": key_parts,
            })

    final = history[-1]
    _publish_snapshots(out, cfg)
    record = model_record(model, cfg, ds, cfg.epochs, final["test_acc"], key, snapshot_epochs(cfg))
    atomic_torch_save(out / "model.pt", record)
    atomic_write_csv(out / "history.csv", pd.DataFrame(history, columns=HISTORY_COLUMNS))
    # Checkpoint before partial snapshots: a run killed in between restarts rather than resuming
    # without its snapshots.
    if not cfg.keep_checkpoint:
        (out / "checkpoint.pt").unlink(missing_ok=True)
    shutil.rmtree(out / PARTIAL_SNAPSHOTS, ignore_errors=True)
    return final
# fmt: on


def _step(fwd: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
          label_smoothing: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step; returns its loss and its number of correct predictions, detached.

    Nothing of the step's autograd graph outlives the call, so it is freed before the next forward
    pass, and with it an AttnRes model's source bank, whose blocks the next step then reuses
    (``arcal.models.attnres.BankBuffers``)."""
    with autocast(device):
        logits = fwd(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), (logits.argmax(1) == y).sum()


def _split_indices(cfg: TrainConfig, ds: ImageDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Training indices into the official train split and test indices into its test split."""
    if not cfg.splits:
        return torch.arange(len(ds.x_train)), torch.arange(len(ds.x_test))
    splits = load_splits(cfg.splits, ds)
    return torch.from_numpy(splits["train"]), torch.from_numpy(splits["test"])


def _check_finite(losses: list[torch.Tensor], epoch: int, n_steps: int, where: str) -> float:
    """Mean of the last (up to) 20 losses; NonFiniteLossError naming epoch and step if one is
    NaN or infinite."""
    window = torch.stack(losses[-20:]).float().cpu()
    bad = (~torch.isfinite(window)).nonzero()
    if len(bad):
        first = int(bad[0, 0])
        step = len(losses) - len(window) + first + 1
        raise NonFiniteLossError(
            f"{where}: training loss is {window[first].item()} at epoch {epoch + 1}, step {step} "
            f"of {n_steps}; lower the learning rate or check the data"
        )
    return window.mean().item()


def _rng_state(gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state() if device.type == "cuda" else None
    return {"data": gen.get_state(), "torch": torch.get_rng_state(), "cuda": cuda}


def snapshot_epochs(cfg: TrainConfig) -> list[int]:
    """The epochs a run keeps a snapshot of: every `snapshot_stride`-th."""
    stride = cfg.snapshot_stride
    return list(range(stride, cfg.epochs + 1, stride)) if stride else []


def _publish_snapshots(out: Path, cfg: TrainConfig) -> None:
    """Make `snapshots/` hold exactly this run's snapshots, hard-linked from the partial folder
    (which stays until the checkpoint is gone, so a kill here loses nothing)."""
    final = out / "snapshots"
    shutil.rmtree(final, ignore_errors=True)
    final.mkdir(parents=True)
    for epoch in snapshot_epochs(cfg):
        src, dst = out / PARTIAL_SNAPSHOTS / f"epoch{epoch}.pt", final / f"epoch{epoch}.pt"
        try:
            os.link(src, dst)
        except OSError:  # a file system without hard links
            shutil.copy2(src, dst)


def _resume(
    out: Path,
    cfg: TrainConfig,
    key: str,
    key_parts: dict[str, Any],
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[int, list[dict[str, float]]]:
    """Start state of a run: the state of `out/checkpoint.pt` (model, optimiser, RNGs) when it
    has this run's weights key and is not finished; else (0, []) and the initial (or fine-tuning)
    weights, after removing any other checkpoint and partial snapshots with a warning."""
    path, partial = out / "checkpoint.pt", out / PARTIAL_SNAPSHOTS
    if path.exists():
        ckpt = load_checkpoint(path)
        if ckpt.get("key") == key and ckpt["epoch"] < cfg.epochs:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            gen.set_state(ckpt["rng"]["data"])
            torch.set_rng_state(ckpt["rng"]["torch"])
            if device.type == "cuda" and ckpt["rng"]["cuda"] is not None:
                torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
            for snapshot in partial.glob("epoch*.pt"):  # written after the checkpoint
                if int(snapshot.stem[len("epoch"):]) > ckpt["epoch"]:
                    snapshot.unlink()
            log.info("resuming %s from epoch %d of %d", out, ckpt["epoch"], cfg.epochs)
            return ckpt["epoch"], ckpt["history"]
        if "key" not in ckpt:
            why = "it has no weights key (written by an older arcal)"
        elif ckpt["key"] != key:
            changes = _key_changes(ckpt.get("key_parts", {}), key_parts)
            why = f"it was written for other weights ({'; '.join(changes)})"
        else:
            why = (
                f"it is the checkpoint of a finished run (epoch {ckpt['epoch']} of {cfg.epochs}), "
                "and running a finished run again retrains it"
            )
        log.warning("%s: checkpoint %s is not resumed: %s; removed it, training from scratch",
                    out, path, why)
        path.unlink()
    shutil.rmtree(partial, ignore_errors=True)
    if cfg.init_checkpoint:
        from arcal.models import load_backbone_checkpoint

        report = load_backbone_checkpoint(model, cfg.init_checkpoint, ignore=("head.",))
        log.info("fine-tuning from %s (%d new tensors)", cfg.init_checkpoint, len(report.missing))
    return 0, []


def model_record(
    model: torch.nn.Module,
    cfg: TrainConfig,
    ds: ImageDataset,
    epoch: int,
    test_acc: float,
    key: str,
    snapshots: list[int] | None = None,
) -> dict[str, Any]:
    """What `model.pt` and snapshots hold: enough to rebuild and evaluate the model, its weights
    key, and (in `model.pt`) the epochs of the run's snapshots."""
    record = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "arcal_config": dict(model.arcal_config),
        "train_config": dataclasses.asdict(cfg),
        "key": key,
        "epoch": epoch,
        "test_acc": test_acc,
        "classes": ds.classes,
        "mean": ds.mean,
        "std": ds.std,
        "arcal_version": arcal.__version__,
        "git_commit": git_commit(),
    }
    if snapshots is not None:
        record["snapshots"] = snapshots
    return record


# ----------------------------------------------------------------------------- CLI


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` strings -> dict, values parsed as YAML (numbers, booleans, null, lists, "
    "dicts)."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m arcal.train",
        description="Train one arcal cell (resumes from out/checkpoint.pt).",
    )
    ap.add_argument("--config", help="YAML or JSON file of TrainConfig fields")
    ap.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config fields"
    )
    ap.add_argument(
        "--out", required=True, help="run folder (model.pt, history.csv, checkpoint.pt, snapshots/)"
    )
    ap.add_argument("--log", default=None, help="also write the log to this file")
    args = ap.parse_args(argv)
    from arcal.logs import setup

    setup(args.log)
    fields: dict[str, Any] = {}
    if args.config:
        text = Path(args.config).read_text()
        fields = (json.loads(text) if args.config.endswith(".json") else yaml.safe_load(text)) or {}
    fields.update(parse_overrides(args.set))
    final = train(TrainConfig.from_dict(fields), args.out)
    log.info("done: %s", final)


if __name__ == "__main__":
    main()
