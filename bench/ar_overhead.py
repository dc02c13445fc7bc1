"""Wall-clock overhead of AttnRes against the baseline, and of routing capture at evaluation.

Measures, in one run and on the CPU in fp32:
* the training step (forward, cross-entropy, backward) at batch 32 of ``full`` and ``block``
  against ``baseline`` for ``deit_s`` at 32x32x3 (patch 4) and ``vit_demo`` at 28x28x1;
* evaluation (``eval()``, ``no_grad``) of the ``block`` model with ``routing_capture`` against
  evaluation without capture.
The variants are timed in interleaved rounds (one step of each per round, order rotated), and each
ratio is the ratio of the per-variant medians. The last line is
``block_ratio=<x> full_ratio=<y> capture_ratio=<z>`` for ``deit_s``.

Usage: python bench/ar_overhead.py [--rounds 7] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from arcal.models import create_model, routing_capture


def _train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
    return step


def _eval_step(model: torch.nn.Module, x: torch.Tensor, capture: bool) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            if capture:
                with routing_capture(model) as trace:
                    model(x)
                trace.result()
            else:
                model(x)
    return step


def interleaved_medians(steps: dict[str, Callable[[], None]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per step of each callable, timed in rotating interleaved rounds."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def measure(substrate: str, img_size: int, in_chans: int, batch: int, rounds: int, **overrides) -> dict[str, float]:
    """Training-step medians per variant and eval medians with and without capture (seconds)."""
    torch.manual_seed(0)
    x = torch.randn(batch, in_chans, img_size, img_size)
    y = torch.randint(0, 10, (batch,))
    models = {v: create_model(substrate, v, 10, img_size, in_chans, **overrides) for v in ("baseline", "full", "block")}
    train = interleaved_medians({v: _train_step(m.train(), x, y) for v, m in models.items()}, rounds)
    ev = models["block"].eval()
    evals = interleaved_medians({"eval": _eval_step(ev, x, False), "capture": _eval_step(ev, x, True)}, rounds)
    return {**train, **evals}


def timing_args(doc: str, rounds: int, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """``--rounds`` and ``--threads`` of a step-timing benchmark, added to ``parser`` (which may
    hold the script's own options); sets the threads and prints the run's header line."""
    parser = parser or argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} interleaved rounds, median")
    return args


def main() -> None:
    args = timing_args(__doc__, 7)
    results = {}
    for name, sub, size, chans, kw in (("vit_demo", "vit_demo", 28, 1, {}),
                                       ("deit_s", "deit_s", 32, 3, {"patch_size": 4})):
        t = measure(sub, size, chans, 32, args.rounds, **kw)
        results[name] = t
        print(f"{name}: train baseline {t['baseline'] * 1e3:.1f} ms, full {t['full'] * 1e3:.1f} ms "
              f"({t['full'] / t['baseline']:.3f}x), block {t['block'] * 1e3:.1f} ms "
              f"({t['block'] / t['baseline']:.3f}x); eval {t['eval'] * 1e3:.1f} ms, with capture "
              f"{t['capture'] * 1e3:.1f} ms ({t['capture'] / t['eval']:.3f}x)")
    t = results["deit_s"]
    print(f"block_ratio={t['block'] / t['baseline']:.3f} full_ratio={t['full'] / t['baseline']:.3f} "
          f"capture_ratio={t['capture'] / t['eval']:.3f}")


if __name__ == "__main__":
    main()
