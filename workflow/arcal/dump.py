"""Dump logits and routing summaries of a trained model (docs/methods.md, "The dump contract").

For the calibration and test splits, `dump` writes `{split}.npz` with exactly the keys of the
dump contract (`arcal.io.DUMP_KEYS`, plus `H_cls` when the model has a class token), and
`routing_profile.npz`: per consumer, the mean routing weight of every source over the test images
(token-mean, NaN-padded to the largest number of sources).

Every dump, baselines included, also holds the attention trace (`A`, `attn_entropy`,
`attn_layers`: the normalised attention entropy of each attention layer,
`arcal.models.attention`), so a standard-residual model can be audited with the same suite.

Temporal pilot: with `ensemble_k = K > 0` it also writes `{split}_ensemble.npz` from the last K
snapshots of the run: logits = log of the snapshots' softmax probabilities averaged, routing
summaries (H, V, H_cls) and attention entropies (A) averaged over the snapshots, and r_agg /
depth_var / attn_entropy their means over consumers (layers). A snapshot with the final model's
weights (the last one, when the run ends on a snapshot epoch) is not evaluated again: its
predictions are the final model's.

Command line:
    python -m arcal.dump --model results/train/<cell>/model.pt \
        --splits results/data/<dataset>/splits.npz --out results/dumps/<cell> [--ensemble-k 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import arcal
from arcal.data import ImageDataset, load_dataset, load_splits
from arcal.io import atomic_save_npz, git_commit
from arcal.models.attention import AttentionBatch, attention_capture
from arcal.routing import RoutingBatch, summarise
from arcal.train import CheckpointError, deterministic, predict, resolve_device

log = logging.getLogger(__name__)

SPLITS = ("calib", "test")


def load_model(
    path: str | os.PathLike, device: torch.device
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild a model from `model.pt` (or a snapshot); CheckpointError if truncated or "
    "mismatched."""
    from arcal.models import create_model

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} not found; train the cell first (python -m arcal.train)"
        )
    try:
        record = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"model file {path} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it "
            "and re-run training"
        ) from exc
    if not isinstance(record, dict) or not {"model", "arcal_config", "train_config"} <= set(record):
        raise CheckpointError(
            f"{path} is not an arcal model file (needs model, arcal_config, train_config); re-run "
            "training"
        )
    model = create_model(**record["arcal_config"])
    try:
        model.load_state_dict(record["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"model file {path} does not match its arcal_config ({exc}); delete it and re-run "
            "training"
        ) from exc
    return model.to(device).eval(), record


def _log_mean_softmax(logits: list[np.ndarray]) -> np.ndarray:
    """log(mean_s softmax(logits_s)), computed stably in float64."""
    logp = torch.stack([torch.log_softmax(torch.from_numpy(z).double(), 1) for z in logits])
    return (torch.logsumexp(logp, 0) - np.log(len(logits))).float().numpy()


def _arrays(
    logits: np.ndarray, labels: np.ndarray, routing: RoutingBatch, meta: dict[str, Any],
    attention: AttentionBatch | None = None,
) -> dict[str, np.ndarray]:
    """The dump contract's arrays (docs/methods.md, "The dump contract") for one split."""
    r_agg, depth_var = summarise(routing)
    out = {
        "logits": logits.astype(np.float32),
        "labels": labels.astype(np.int64),
        "H": routing.H.astype(np.float32),
        "V": routing.V.astype(np.float32),
        "r_agg": r_agg.astype(np.float32),
        "depth_var": depth_var.astype(np.float32),
        "n_sources": routing.n_sources.astype(np.int64),
        "consumers": np.array(routing.consumers, dtype=str).reshape(len(routing.consumers)),
        "meta": np.array(json.dumps(meta, sort_keys=True)),
    }
    if routing.H_cls is not None:
        out["H_cls"] = routing.H_cls.astype(np.float32)
    if attention is not None:
        out["A"] = attention.A.astype(np.float32)
        out["attn_entropy"] = attention.mean
        out["attn_layers"] = np.array(attention.layers, dtype=str).reshape(len(attention.layers))
    return out


def _predict(
    model: torch.nn.Module, x: torch.Tensor, record: dict[str, Any], bs: int, dev: torch.device
) -> tuple[Any, AttentionBatch]:
    """`predict` with routing capture, and the attention entropies of the same passes."""
    with attention_capture(model) as attention:
        pred = predict(model, x, record["mean"], record["std"], bs, dev, capture=True)
    return pred, attention.result()


def _mean_attention(batches: list[AttentionBatch]) -> AttentionBatch:
    """Attention entropies averaged over snapshots (same layers, same images)."""
    if any(b.layers != batches[0].layers for b in batches):
        raise ValueError("snapshots have different attention layers; were they trained with one config?")
    return AttentionBatch(np.mean([b.A for b in batches], axis=0).astype(np.float32),
                          batches[0].layers)


def _mean_routing(batches: list[RoutingBatch]) -> RoutingBatch:
    """Routing summaries averaged over snapshots (same consumers, same images)."""
    first = batches[0]
    if any(b.consumers != first.consumers for b in batches):
        raise ValueError(
            "snapshots have different routing consumers; were they trained with one config?"
        )

    def mean(name: str) -> np.ndarray:
        return np.mean([getattr(b, name) for b in batches], axis=0).astype(np.float32)

    return RoutingBatch(
        H=mean("H"),
        V=mean("V"),
        H_cls=mean("H_cls") if first.H_cls is not None else None,
        n_sources=first.n_sources,
        consumers=first.consumers,
        alpha_sum=[
            np.mean([b.alpha_sum[i] for b in batches], axis=0) for i in range(len(first.consumers))
        ],
        n_images=first.n_images,
    )


def routing_profile(routing: RoutingBatch) -> dict[str, np.ndarray]:
    """`consumers` (L,), `n_sources` (L,), `alpha_mean` (L, max n_l): mean token-mean weight of
    every source over the images, NaN where a consumer has fewer sources."""
    width = int(routing.n_sources.max()) if len(routing.consumers) else 0
    alpha = np.full((len(routing.consumers), width), np.nan)
    for i, a in enumerate(routing.alpha_sum):
        alpha[i, : len(a)] = a / max(routing.n_images, 1)
    return {
        "consumers": np.array(routing.consumers, dtype=str).reshape(len(routing.consumers)),
        "n_sources": routing.n_sources.astype(np.int64),
        "alpha_mean": alpha,
    }


def ensemble_members(
    model_path: Path, record: dict[str, Any], k: int, device: torch.device
) -> list[tuple[torch.nn.Module, dict[str, Any]]]:
    """The last `k` snapshots of the run that wrote `model_path`, oldest first: the epochs its
    `model.pt` lists, each checked to carry the model's weights key (a snapshot left by an earlier
    run of the same folder is refused, never averaged in)."""
    epochs = record.get("snapshots")
    if epochs is None:
        raise CheckpointError(
            f"{model_path} does not list its run's snapshots (written by an older arcal); re-run "
            "training"
        )
    if len(epochs) < k:
        raise ValueError(
            f"ensemble_k={k} but the run of {model_path} kept {len(epochs)} snapshot(s); train "
            "with snapshot_stride > 0 and enough epochs, or lower ensemble_k"
        )
    members = []
    for epoch in epochs[-k:]:
        path = model_path.parent / "snapshots" / f"epoch{epoch}.pt"
        member = load_model(path, device)
        if member[1].get("key") != record["key"]:
            raise CheckpointError(
                f"snapshot {path} belongs to another training run than {model_path} (weights key "
                f"{member[1].get('key')} vs {record['key']}); re-run training"
            )
        members.append(member)
    return members


def dump(
    model_path: str | os.PathLike,
    splits_path: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    ensemble_k: int = 0,
    data_root: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> dict[str, Path]:
    """Write `calib.npz`, `test.npz`, `routing_profile.npz` (and `*_ensemble.npz` when
    `ensemble_k` > 0) for the model in `model_path` into `out_dir`; return the written paths.

    The dataset comes from the model's train config (`data_root` overrides its root). Without
    `splits_path` (standalone use) the official test split is halved into calib and test.
    """
    if ensemble_k < 0:
        raise ValueError(f"ensemble_k={ensemble_k} must be >= 0 (0 = no snapshot ensemble)")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    with deterministic(dev):
        return _dump(
            Path(model_path), splits_path, Path(out_dir), ensemble_k, data_root, batch_size, dev
        )


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two models of one run hold equal parameters and buffers (so equal outputs)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _dump(
    model_path: Path,
    splits_path: str | os.PathLike | None,
    out: Path,
    ensemble_k: int,
    data_root: str | None,
    batch_size: int | None,
    dev: torch.device,
) -> dict[str, Path]:
    model, record = load_model(model_path, dev)
    tc = record["train_config"]
    ds = load_dataset(tc["dataset"], data_root or tc["data_root"], tc["download"], tc.get("kind"))
    if splits_path is not None:
        splits = load_splits(splits_path, ds)
    else:
        half = len(ds.x_test) // 2
        splits = {"calib": np.arange(half), "test": np.arange(half, len(ds.x_test))}
    bs = batch_size or tc["eval_batch_size"]
    written: dict[str, Path] = {}
    ensemble = ensemble_members(model_path, record, ensemble_k, dev) if ensemble_k else []
    is_final = [same_weights(m, model) for m, _ in ensemble]
    for split in SPLITS:
        idx = torch.from_numpy(splits[split])
        x, labels = ds.x_test[idx], ds.y_test[idx].numpy()
        final = _predict(model, x, record, bs, dev)
        pred, attention = final
        meta = _meta(record, ds, split, pred.logits, labels)
        written[split] = _save(
            out / f"{split}.npz", _arrays(pred.logits, labels, pred.routing, meta, attention)
        )
        if split == "test":
            written["routing_profile"] = out / "routing_profile.npz"
            atomic_save_npz(written["routing_profile"], **routing_profile(pred.routing))
        if ensemble:
            runs = [final if same else _predict(m, x, r, bs, dev)
                    for (m, r), same in zip(ensemble, is_final)]
            preds = [p for p, _ in runs]
            logits = _log_mean_softmax([p.logits for p in preds])
            meta = _meta(
                record, ds, split, logits, labels, snapshot_epochs=[r["epoch"] for _, r in ensemble]
            )
            arrays = _arrays(logits, labels, _mean_routing([p.routing for p in preds]), meta,
                             _mean_attention([a for _, a in runs]))
            written[f"{split}_ensemble"] = _save(out / f"{split}_ensemble.npz", arrays)
    return written


def _meta(
    record: dict, ds: ImageDataset, split: str, logits: np.ndarray, labels: np.ndarray, **extra: Any
) -> dict[str, Any]:
    tc = record["train_config"]
    return {
        "dataset": tc["dataset"],
        "substrate": tc["substrate"],
        "variant": tc["variant"],
        "seed": tc["seed"],
        "epoch": record["epoch"],
        "split": split,
        "n": int(len(labels)),
        "classes": ds.classes,
        "accuracy": float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan"),
        "arcal_version": arcal.__version__,
        "git_commit": git_commit(),
        **extra,
    }


def _save(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    atomic_save_npz(path, **arrays)
    log.info("wrote %s (N=%d, L=%d)", path, arrays["logits"].shape[0], arrays["H"].shape[1])
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m arcal.dump",
        description="Dump logits and routing summaries of a trained arcal model.",
    )
    ap.add_argument("--model", required=True, help="model.pt of a training run")
    ap.add_argument(
        "--splits",
        default=None,
        help="splits.npz of the data stage (default: halves of the test split)",
    )
    ap.add_argument(
        "--out", required=True, help="output folder (calib.npz, test.npz, routing_profile.npz)"
    )
    ap.add_argument(
        "--ensemble-k", type=int, default=0, help="also dump an ensemble of the last K snapshots"
    )
    ap.add_argument(
        "--data-root", default=None, help="override the dataset root stored in the model"
    )
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--log", default=None, help="also write the log to this file")
    args = ap.parse_args(argv)
    from arcal.logs import setup

    setup(args.log)
    dump(
        args.model,
        args.splits,
        args.out,
        args.ensemble_k,
        args.data_root,
        args.batch_size,
        args.device,
        args.threads,
    )


if __name__ == "__main__":
    main()
