"""GPU training throughput of the Attention-Residual substrates (issue: fast GPU training).

Measures, in one run on one device: the training step time and images per second of baseline,
Block and Full AttnRes for DeiT-S and Swin-T at 32x32 (batch 256, bf16 autocast, fused AdamW,
data and augmentation resident on the device, as `arcal.train` does), the projected wall time of
a 300-epoch CIFAR-10 run, model FLOPs utilisation against the device's bf16 matrix-multiply
rate measured in the same run, and the peak GPU memory of each model. Writes
bench/results/gpu-train-<device>.json and prints, last:

    device=<name> deit_s_block_300ep_min=<m> block_ratio=<x> full_ratio=<y> mfu=<f>

`--smoke` runs tiny models for a few steps on whatever device there is (a CPU check of the code
path; its numbers mean nothing). `bench/gpu_check.sh` runs this benchmark (`benchmark`) among all
the GPU-only checks.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from arcal.data import augment, normalize
from arcal.models import create_model
from arcal.train import autocast, param_groups, resolve_device

CIFAR10_TRAIN = 50_000
EPOCHS = 300
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
SUBSTRATES = ("deit_s", "swin_t")
VARIANTS = ("baseline", "block", "full")
#: Tiny versions of the substrates for --smoke (a CPU check of the code path).
SMOKE = {
    "deit_s": {"embed_dim": 64, "depth": 4, "num_heads": 2},
    "swin_t": {"embed_dim": 32, "depths": (2, 2), "num_heads": (1, 2)},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def slug(name: str) -> str:
    """A device name as a file-name part: "NVIDIA H200" -> "nvidia-h200"."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak GPU memory allocated since the last reset, in GiB (None on the CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def matmul_rate(device: torch.device, n: int, repeats: int) -> float:
    """Measured dense matrix-multiply rate in FLOP/s (bf16 on GPU, fp32 on CPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def make_step(model: torch.nn.Module, device: torch.device, compiled: bool):
    """One training step of arcal.train: augment, normalise, bf16 forward, CE, backward, AdamW."""
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3, **fused)
    fwd = torch.compile(model) if compiled else model
    gen = torch.Generator().manual_seed(0)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            logits = fwd(normalize(augment(x, gen, 4, True), MEAN, STD))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def flops_per_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> float:
    """Forward + backward FLOPs of one batch (matrix multiplies and convolutions)."""
    counter = FlopCounterMode(display=False)
    with counter, autocast(device):
        F.cross_entropy(model(normalize(x, MEAN, STD)).float(), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def measure(substrate: str, variant: str, batch: int, steps: int, warmup: int, compiled: bool, smoke: bool,
            device: torch.device) -> dict[str, float | None]:
    """Median training-step time of one model over `steps` steps after `warmup` (compilation
    included there), its FLOPs per step and its peak GPU memory."""
    overrides = SMOKE[substrate] if smoke else {}
    torch.manual_seed(0)
    reset_peak_memory(device)
    model = create_model(substrate, variant, 10, 32, 3, **overrides).to(device).train()
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    flops = flops_per_step(model, x, y, device)
    step = make_step(model, device, compiled)
    for _ in range(warmup):
        step(x, y)
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    t = times[len(times) // 2]  # median step
    steps_per_epoch = math.ceil(CIFAR10_TRAIN / batch)
    return {
        "step_s": t,
        "images_per_s": batch / t,
        "flops_per_step": flops,
        "projected_300ep_min": t * steps_per_epoch * EPOCHS / 60,
        "peak_memory_gib": peak_memory_gib(device),
    }


def benchmark(device: torch.device, batch: int = 256, steps: int = 30, warmup: int = 10, compiled: bool = False,
              smoke: bool = False, substrates: tuple[str, ...] = SUBSTRATES,
              matmul_flops_per_s: float | None = None) -> dict:
    """Step times of every substrate x variant; ratios and the 300-epoch projection of DeiT-S.

    `matmul_flops_per_s` (the MFU denominator) is measured here unless given. DeiT-S must be among
    `substrates`: its baseline is the reference of the ratios.
    """
    if matmul_flops_per_s is None:
        matmul_flops_per_s = matmul_rate(device, 8192 if device.type == "cuda" else 1024,
                                         20 if device.type == "cuda" else 3)
    results = {}
    for substrate in substrates:
        for variant in VARIANTS:
            results[f"{substrate}/{variant}"] = r = measure(substrate, variant, batch, steps, warmup, compiled,
                                                             smoke, device)
            r["mfu"] = r["flops_per_step"] / r["step_s"] / matmul_flops_per_s
            print(f"{substrate:7s} {variant:8s} {'compiled' if compiled else 'eager':8s} "
                  f"step {1e3 * r['step_s']:8.2f} ms  {r['images_per_s']:9.0f} img/s  "
                  f"300 epochs {r['projected_300ep_min']:8.1f} min  MFU {r['mfu']:.3f}", flush=True)
    base = results["deit_s/baseline"]["step_s"]
    return {
        "device": device_name(device),
        "matmul_flops_per_s": matmul_flops_per_s,
        "batch": batch,
        "compile": compiled,
        "smoke": smoke,
        "torch": torch.__version__,
        "deit_s_block_300ep_min": results["deit_s/block"]["projected_300ep_min"],
        "block_ratio": results["deit_s/block"]["step_s"] / base,
        "full_ratio": results["deit_s/full"]["step_s"] / base,
        "mfu": results["deit_s/block"]["mfu"],
        "runs": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="torch.compile the models")
    ap.add_argument("--smoke", action="store_true", help="tiny models, few steps (code check)")
    ap.add_argument("--out", default=None, help="JSON path (default bench/results/gpu-train-<device>.json)")
    args = ap.parse_args()
    if args.smoke:
        args.batch, args.steps, args.warmup = min(args.batch, 16), 3, 1
    device = resolve_device("auto")
    summary = benchmark(device, args.batch, args.steps, args.warmup, args.compile, args.smoke)
    name = slug(summary["device"])
    out = Path(args.out or Path(__file__).parent / "results" / f"gpu-train-{name}.json")
    if not args.smoke or args.out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"device={name} deit_s_block_300ep_min={summary['deit_s_block_300ep_min']:.2f} "
          f"block_ratio={summary['block_ratio']:.3f} full_ratio={summary['full_ratio']:.3f} "
          f"mfu={summary['mfu']:.3f}")


if __name__ == "__main__":
    main()
