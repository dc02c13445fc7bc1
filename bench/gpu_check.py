"""Every GPU-only check of arcal in one run of at most 8 minutes (run it through bench/gpu_check.sh).

Phases, in order, each written to the JSON as soon as it is done (an interrupted run keeps what it
measured); optional phases are skipped, with the reason recorded, when the time budget is spent:

1. `benchmark`: bench/gpu_train.py's training-step benchmark without compilation (DeiT-S and Swin-T
   at 32x32 x baseline, Block, Full, batch 256, bf16): images/s, projected 300-epoch CIFAR-10
   minutes, MFU, peak memory per model; the Block and Full step ratios against the baseline.
2. `capture`: evaluation of DeiT-S Block (float32, as dumps run) with routing capture against
   without: the capture ratio.
3. `training`: one short real training run and dump on Fashion-MNIST (vit_demo Block, bf16
   training), with compilation off and then on: the loss stays finite, the dump's logits are
   float32 and match a float64 evaluation of the same model (bf16 evaluation would be about 1e-2
   off), the test accuracy is above chance, peak memory.
4. `benchmark_compiled`: the benchmark of DeiT-S with torch.compile (baseline, Block, Full).

`targets` compares the DeiT-S numbers (compiled where measured) with the issue's targets: Block
300 epochs at most 10 minutes, Block step at most 1.05x and Full at most 1.15x the baseline's.
`checks` holds the pass/fail of the correctness checks and `ok` their conjunction; the exit
status is 1 when a check fails (targets are reported, not enforced).

Data: Fashion-MNIST's four IDX files (`*-ubyte.gz`, about 30 MB) from `bench/data/fashion-mnist/`
(git-ignored; fill it with `mkdir -p bench/data/fashion-mnist && cp
/usr/share/datasets/fashion-mnist/*-ubyte.gz bench/data/fashion-mnist/`, the Debian package
dataset-fashion-mnist), else from the Debian folder itself. With `--data auto` (the default of a
GPU run) and neither present, the run uses synthetic 28x28 images (ten brightness levels, the
level being the class), labelled `"source": "synthetic"` in the JSON and `checks.real_data:
false`; `--data fashion-mnist` refuses to run without the files instead.

`--dry-run` runs the same code on the CPU with tiny sizes and synthetic data (unless `--data` says
otherwise) in well under a minute, every phase (no time budget), torch.compile with the `eager`
backend (Dynamo's graph capture without code generation); its numbers mean nothing. It needs no
GPU, no network and neither snakemake nor relplot (the JSON lists any of them found imported under
`forbidden_imports`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

REQUIRED = ("torch", "timm", "numpy", "scipy", "pandas", "yaml", "tqdm")
FORBIDDEN = ("snakemake", "relplot")
HERE = Path(__file__).resolve().parent
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
LOCAL_FASHION = HERE / "data" / "fashion-mnist"
TARGETS = {"deit_s_block_300ep_min": 10.0, "block_ratio": 1.05, "full_ratio": 1.15}
#: Sizes of a real run and of --dry-run.
SIZES = {
    False: dict(budget_s=450.0, batch=256, steps=30, warmup=10, capture_batch=256, capture_rounds=15,
                n_train=None, n_calib=5000, n_test=5000, epochs=2, train_batch=256, exact_n=1000),
    True: dict(budget_s=None, batch=8, steps=2, warmup=1, capture_batch=8, capture_rounds=3,
               n_train=512, n_calib=128, n_test=256, epochs=2, train_batch=32, exact_n=128),
}
#: Seconds an optional phase is expected to need on an H100/H200-class GPU (compilation mostly).
NEEDS_S = {"training_compiled": 100.0, "benchmark_compiled": 240.0}


def preflight() -> None:
    """Fail with one clear line if a module the check needs is not installed."""
    import importlib.util

    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"gpu_check: missing Python modules {missing}; this check runs with torch, timm (which brings "
                 "pyyaml and tqdm), numpy, scipy and pandas only")


def find_fashion_mnist(choice: str) -> Path | None:
    """The folder holding Fashion-MNIST's four IDX files, or None for synthetic data."""
    from arcal.data import FASHION_MNIST_DEBIAN

    if choice == "synthetic":
        return None
    folders = (LOCAL_FASHION, Path(FASHION_MNIST_DEBIAN))
    for folder in folders:
        if all((folder / f).is_file() for f in FASHION_FILES):
            return folder
    if choice == "fashion-mnist":
        sys.exit(f"gpu_check: Fashion-MNIST's files {list(FASHION_FILES)} are in none of "
                 f"{[str(d) for d in folders]}; copy them with `mkdir -p bench/data/fashion-mnist && cp "
                 f"{FASHION_MNIST_DEBIAN}/*-ubyte.gz bench/data/fashion-mnist/` (Debian package "
                 "dataset-fashion-mnist)")
    print("gpu_check: WARNING: no Fashion-MNIST files found; training on SYNTHETIC data", flush=True)
    return None


def synthetic_npz(path: Path, n_train: int, n_test: int) -> Path:
    """Fashion-MNIST-shaped synthetic data: 28x28 grey images whose brightness is the class (ten
    levels 24 apart, pixel noise of +-30), so every patch shows the class and a small ViT learns
    it in a few dozen steps."""
    import numpy as np

    rng = np.random.default_rng(0)

    def images(n: int):
        y = rng.integers(0, 10, n)
        x = 12 + 24 * y[:, None, None] + rng.integers(-30, 31, (n, 28, 28))
        return x.clip(0, 255).astype(np.uint8), y

    (x_train, y_train), (x_test, y_test) = images(n_train), images(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             classes=np.array([f"level {k}" for k in range(10)]))
    return path


@contextlib.contextmanager
def compile_backend(backend: str | None) -> Iterator[None]:
    """Make every `torch.compile` call (arcal.train's and the benchmark's) use `backend`; None
    leaves the default (inductor)."""
    import torch

    if backend is None:
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


def capture_ratio(device, batch: int, rounds: int, dry_run: bool) -> dict[str, float]:
    """Evaluation of DeiT-S Block with and without routing capture, in float32 as dumps run."""
    import torch
    from ar_overhead import _eval_step, interleaved_medians
    from gpu_train import SMOKE, sync

    from arcal.models import create_model
    from arcal.train import full_precision

    torch.manual_seed(0)
    model = create_model("deit_s", "block", 10, 32, 3, **(SMOKE["deit_s"] if dry_run else {})).to(device).eval()
    x = torch.randn(batch, 3, 32, 32, device=device)

    def timed(step: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with full_precision(device):
                step()
            sync(device)
        return run

    t = interleaved_medians({"eval": timed(_eval_step(model, x, False)),
                             "capture": timed(_eval_step(model, x, True))}, rounds)
    return {"eval_s": t["eval"], "capture_s": t["capture"], "capture_ratio": t["capture"] / t["eval"]}


def train_and_dump(device, compiled: bool, data: Path | None, work: Path, sizes: dict) -> dict[str, Any]:
    """One short training run of vit_demo Block and its dump; the checks on both."""
    import numpy as np
    import pandas as pd
    import torch
    from gpu_train import peak_memory_gib, reset_peak_memory

    from arcal.data import load_dataset, load_splits, make_splits, normalize, write_splits
    from arcal.dump import dump, load_model
    from arcal.io import load_dump
    from arcal.train import train
    from arcal.train_config import TrainConfig

    run = work / ("compiled" if compiled else "eager")
    kind, root = ("fashion-mnist", str(data)) if data else ("npz", str(work / "synthetic.npz"))
    ds = load_dataset("fashion-mnist", root, kind=kind)
    splits_path = work / "splits.npz"
    if not splits_path.exists():
        splits = make_splits(len(ds.x_train), len(ds.x_test), seed=0, n_train=sizes["n_train"],
                             n_calib=sizes["n_calib"], n_test=sizes["n_test"])
        write_splits(splits_path, ds, splits, seed=0)
    cfg = TrainConfig(dataset="fashion-mnist", kind=kind, data_root=root, splits=str(splits_path),
                      substrate="vit_demo", variant="block", epochs=sizes["epochs"],
                      batch_size=sizes["train_batch"], eval_batch_size=1000, lr=3e-3, warmup_epochs=0.5,
                      crop_padding=0, flip=False, device=device.type, compile=compiled, seed=0)
    reset_peak_memory(device)
    t0 = time.perf_counter()
    train(cfg, run / "train")
    train_s = time.perf_counter() - t0
    peak = peak_memory_gib(device)
    history = pd.read_csv(run / "train" / "history.csv")
    t0 = time.perf_counter()
    dump(run / "train" / "model.pt", splits_path, run / "dump", device=device.type)
    dump_s = time.perf_counter() - t0

    d = load_dump(run / "dump" / "test.npz")
    test_idx = load_splits(splits_path, ds)["test"]
    n = min(sizes["exact_n"], len(test_idx))
    model, record = load_model(run / "train" / "model.pt", device)
    with torch.no_grad():  # the same model in float64: what float32 logits must match
        x = normalize(ds.x_test[test_idx[:n]].to(device), record["mean"], record["std"]).double()
        exact = model.double()(x).cpu().numpy()
    top2 = np.sort(d.logits, axis=1)[:, -2:]
    accuracy = float((d.logits.argmax(1) == d.labels).mean())
    chance = 1.0 / len(ds.classes)
    err = float(np.abs(d.logits[:n].astype(np.float64) - exact).max())
    return {
        "compile": compiled,
        "epochs": cfg.epochs,
        "n_train": int(len(load_splits(splits_path, ds)["train"])),
        "n_test": int(len(d.labels)),
        "train_loss": [float(v) for v in history["train_loss"]],
        "loss_finite": bool(np.isfinite(history["train_loss"]).all()),
        "dump_logits_dtype": str(d.logits.dtype),
        "dump_max_abs_error_vs_float64": err,
        "dump_max_abs_logit": float(np.abs(exact).max()),
        "dump_float32": bool(d.logits.dtype == np.float32 and err < 1e-3 * max(1.0, np.abs(exact).max())),
        "tied_top_logits": int((top2[:, 0] == top2[:, 1]).sum()),
        "accuracy": accuracy,
        "chance": chance,
        "above_chance": bool(accuracy > 2 * chance),
        "train_s": train_s,
        "dump_s": dump_s,
        "peak_memory_gib": peak,
    }


def summarise(r: dict[str, Any], real_data: bool) -> None:
    """Fill the summary keys from the phases done so far (a run cut short stays coherent)."""
    trainings = [r[k] for k in ("training_eager", "training_compiled") if k in r]
    benches = [r[k] for k in ("benchmark", "benchmark_compiled") if k in r]
    eager, compiled = r.get("benchmark", {}), r.get("benchmark_compiled", {})
    r["overhead"] = {
        "block_ratio": eager.get("block_ratio"), "full_ratio": eager.get("full_ratio"),
        "capture_ratio": r.get("capture", {}).get("capture_ratio"),
        "compiled_block_ratio": compiled.get("block_ratio"), "compiled_full_ratio": compiled.get("full_ratio"),
    }
    peaks = [x["peak_memory_gib"] for b in benches for x in b["runs"].values()] + \
        [t["peak_memory_gib"] for t in trainings]
    r["peak_memory_gib"] = max((x for x in peaks if x is not None), default=None)
    source = "compiled" if compiled else "eager" if eager else None
    r["targets"] = {k: {"value": (compiled or eager)[k], "limit": limit, "met": (compiled or eager)[k] <= limit,
                        "from": source} for k, limit in TARGETS.items()} if source else {}
    r["forbidden_imports"] = sorted(m for m in FORBIDDEN if m in sys.modules)
    r["checks"] = {
        "loss_finite": bool(trainings) and all(t["loss_finite"] for t in trainings),
        "dump_float32": bool(trainings) and all(t["dump_float32"] for t in trainings),
        "accuracy_above_chance": bool(trainings) and all(t["above_chance"] for t in trainings),
        "compile_on_and_off": len(trainings) == 2,
        "real_data": real_data,
        "no_forbidden_imports": not r["forbidden_imports"],
    }
    r["ok"] = all(v for k, v in r["checks"].items() if k != "real_data")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/gpu_check.sh", description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (a check of the code path)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/gpu-<device>.json; with "
                                                "--dry-run a file in the temporary folder)")
    ap.add_argument("--data", choices=("auto", "fashion-mnist", "synthetic"), default=None,
                    help="training data (auto, the default of a GPU run: Fashion-MNIST when its files are found, "
                         "else synthetic; a dry run defaults to synthetic)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds after which optional phases are skipped (default 450; a dry run skips none)")
    args = ap.parse_args(argv)
    preflight()
    started = time.perf_counter()
    sizes = dict(SIZES[args.dry_run])
    budget = args.budget_s if args.budget_s is not None else sizes["budget_s"]

    import gpu_train
    import torch

    from arcal.io import atomic_write_json

    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        sys.exit("gpu_check: no CUDA device is visible; use --dry-run for a CPU check of the code path")
    name = gpu_train.device_name(device)
    slug = gpu_train.slug(name) + ("-dry-run" if args.dry_run else "")
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / "arcal-gpu-check" if args.dry_run
                                           else HERE / "results") / f"gpu-{slug}.json"
    data = find_fashion_mnist(args.data or ("synthetic" if args.dry_run else "auto"))
    backend = "eager" if args.dry_run else None
    r: dict[str, Any] = {
        "device": name, "dry_run": args.dry_run, "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "compile_backend": backend or "inductor", "budget_s": budget,
        "data": {"source": "fashion-mnist" if data else "synthetic", "root": str(data) if data else None},
        "skipped": {}, "phases_done": [],
    }

    def remaining() -> float:
        return math.inf if budget is None else budget - (time.perf_counter() - started)

    def write() -> None:
        r["wall_s"] = time.perf_counter() - started
        summarise(r, data is not None)
        atomic_write_json(out, r)

    def phase(key: str, fn: Callable[[], Any], needs_s: float = 0.0) -> None:
        if remaining() < needs_s:
            r["skipped"][key] = (f"time budget: {remaining():.0f} s left of {budget:.0f} s, "
                                 f"needs about {needs_s:.0f} s")
            print(f"gpu_check: skipping {key}: {r['skipped'][key]}", flush=True)
        else:
            print(f"gpu_check: {key} ...", flush=True)
            t0 = time.perf_counter()
            r[key] = fn()
            r["phases_done"].append(key)
            print(f"gpu_check: {key} done in {time.perf_counter() - t0:.1f} s", flush=True)
        write()

    with tempfile.TemporaryDirectory(prefix="arcal-gpu-check-") as tmp, compile_backend(backend):
        work = Path(tmp)
        if data is None:
            n = sizes["n_train"] or 12000
            synthetic_npz(work / "synthetic.npz", n, sizes["n_calib"] + sizes["n_test"])
        bench_args = dict(batch=sizes["batch"], steps=sizes["steps"], warmup=sizes["warmup"], smoke=args.dry_run)
        phase("benchmark", lambda: gpu_train.benchmark(device, compiled=False, **bench_args))
        phase("capture", lambda: capture_ratio(device, sizes["capture_batch"], sizes["capture_rounds"], args.dry_run))
        phase("training_eager", lambda: train_and_dump(device, False, data, work, sizes))
        phase("training_compiled", lambda: train_and_dump(device, True, data, work, sizes),
              NEEDS_S["training_compiled"])
        rate = r["benchmark"]["matmul_flops_per_s"]
        phase("benchmark_compiled", lambda: gpu_train.benchmark(device, compiled=True, substrates=("deit_s",),
                                                                 matmul_flops_per_s=rate, **bench_args),
              NEEDS_S["benchmark_compiled"])

    write()
    print(f"gpu_check: wrote {out}")
    shown = " ".join(f"{k}={v['value']:.3f}" for k, v in r["targets"].items())
    print(f"device={slug} ok={r['ok']} {shown} capture_ratio={r['overhead']['capture_ratio']:.3f}")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
