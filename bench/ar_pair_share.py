"""How much of the Full AttnRes training step's overhead is pair work, and how much is the rest.

Pair work is what every (consumer, source) pair costs: a consumer's weighted sum over its k
sources, and in the backward pass a source's reading of the output gradients of the m consumers
that read it, for its gradient and its logits' gradients (:class:`arcal.models.attnres.SourceBank`,
docs/attnres.md, "Memory and speed"). The rest is per source or per consumer: copying a source
into the bank, its RMS and scores and their gradients, the softmax, recording a consumer's
gradient, and the cost of each operation.

Times, in interleaved rounds (``bench/ar_overhead.py``), the training step of the baseline, of
Full AttnRes, of Full AttnRes with each of those two bank kernels replaced by a stand-in that
touches one source per consumer (one consumer per source) instead of k (m), and of Full AttnRes
with both replaced. The
stand-ins make the model's outputs and gradients wrong: this is a timing probe, and nothing else
uses them. The ratio with both replaced is the floor the rest of the routing leaves; its
difference from the Full ratio is the most any faster pair kernel could gain, and each kernel's
share is the Full ratio less the ratio without that kernel alone.

It then times the real kernels' own calls inside the Full step, and one step's calls replayed
alone (:func:`kernel_seconds`): a kernel's cost in the model against what its microbenchmark sees.

``--substrate deit_s`` (default): DeiT-S at 32x32x3, patch 4, batch 32, the model of
``bench/ar_overhead.py``'s targets. ``--substrate vit_demo``: the demo ViT at 28x28x1, batch 64,
as the demo trains it (with ``--threads 1``, as each demo training job runs).

Usage: python bench/ar_pair_share.py [--substrate deit_s] [--rounds 25] [--threads N]
The last line is ``full_ratio=<x> without_pair_work_ratio=<y> pair_share=<x - y>
weighted_sum_share=<a> source_grads_share=<b>``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from typing import Callable, Sequence
from unittest import mock

import torch

from ar_overhead import _train_step, interleaved_medians, timing_args
from arcal.models import create_model
from arcal.models.attnres import SourceBank


def _one_source_sum(bank: SourceBank, alpha: torch.Tensor) -> torch.Tensor:
    return bank.values[alpha.shape[0] - 1] * alpha[-1].unsqueeze(-1)


def _one_consumer_grads(bank: SourceBank, index: int, first: int) -> tuple[torch.Tensor, torch.Tensor]:
    weights = bank.weights[first:, index]
    return bank.out_grads[first] * weights[0].unsqueeze(-1), torch.zeros_like(weights)


# pair kernel (a SourceBank method) -> its stand-in
STAND_INS = {"weighted_sum": _one_source_sum, "source_grads": _one_consumer_grads}
PAIR_KERNELS = tuple(STAND_INS)

# substrate: ((channels, height, width), batch, model overrides) of the timed step
INPUTS = {"deit_s": ((3, 32, 32), 32, {"patch_size": 4}), "vit_demo": ((1, 28, 28), 64, {})}


def _patched(replacements: dict[str, Callable]) -> contextlib.ExitStack:
    """The named SourceBank methods replaced while the context is open."""
    stack = contextlib.ExitStack()
    for name, replacement in replacements.items():
        stack.enter_context(mock.patch.object(SourceBank, name, replacement))
    return stack


def without_pair_work(kernels: Sequence[str] = PAIR_KERNELS) -> contextlib.ExitStack:
    """The named bank pair kernels (both by default) swapped for their stand-ins while the
    context is open."""
    return _patched({name: STAND_INS[name] for name in kernels})


def _inside(context: Callable[[], contextlib.AbstractContextManager], step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with context():
            step()
    return run


def kernel_seconds(step: Callable[[], None], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per Full step that each real pair kernel takes where it runs, inside the step (each
    call timed), and that one step's calls take replayed alone, each run once to bring its data
    into cache and then timed over three repeats: what a microbenchmark of the kernel would see.
    The stand-in shares of :func:`main` also hold whatever a kernel costs the operations around
    it; these hold only the kernels' own calls."""
    real = {name: getattr(SourceBank, name) for name in PAIR_KERNELS}
    inside = dict.fromkeys(PAIR_KERNELS, 0.0)
    calls: list[tuple[str, SourceBank, tuple]] = []

    def timed(name: str) -> Callable:
        def run(bank: SourceBank, *args):
            t0 = time.perf_counter()
            out = real[name](bank, *args)
            inside[name] += time.perf_counter() - t0
            calls.append((name, bank, args))
            return out
        return run

    with _patched({name: timed(name) for name in PAIR_KERNELS}):
        for _ in range(rounds):
            calls.clear()  # keep one step's calls (and banks) for the replay
            step()
    alone = dict.fromkeys(PAIR_KERNELS, 0.0)
    for name, bank, args in calls:
        real[name](bank, *args)
        t0 = time.perf_counter()
        for _ in range(3):
            real[name](bank, *args)
        alone[name] += (time.perf_counter() - t0) / 3
    return {name: seconds / rounds for name, seconds in inside.items()}, alone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--substrate", choices=sorted(INPUTS), default="deit_s")
    args = timing_args(__doc__, 25, parser)
    (chans, size, _), batch, overrides = INPUTS[args.substrate]
    torch.manual_seed(0)
    x, y = torch.randn(batch, chans, size, size), torch.randint(0, 10, (batch,))
    baseline, full = (create_model(args.substrate, v, 10, size, chans, **overrides).train()
                      for v in ("baseline", "full"))
    steps = {"baseline": _train_step(baseline, x, y), "full": _train_step(full, x, y)}
    for name in PAIR_KERNELS:
        steps[f"without_{name}"] = _inside(lambda name=name: without_pair_work([name]), _train_step(full, x, y))
    steps["without_pair_work"] = _inside(without_pair_work, _train_step(full, x, y))
    t = interleaved_medians(steps, args.rounds)
    ratio = {name: seconds / t["baseline"] for name, seconds in t.items()}
    print(f"{args.substrate}, batch {batch}: train baseline {t['baseline'] * 1e3:.1f} ms, full "
          f"{t['full'] * 1e3:.1f} ms, full without pair work {t['without_pair_work'] * 1e3:.1f} ms")
    inside, alone = kernel_seconds(steps["full"], 5)
    print("pair kernels per Full step, inside the step / their calls alone: " + ", ".join(
        f"{name} {inside[name] * 1e3:.1f} / {alone[name] * 1e3:.1f} ms" for name in PAIR_KERNELS)
        + f"; {sum(inside.values()) / sum(alone.values()):.2f} times as long inside")
    shares = " ".join(f"{name}_share={ratio['full'] - ratio[f'without_{name}']:.3f}" for name in PAIR_KERNELS)
    print(f"full_ratio={ratio['full']:.3f} without_pair_work_ratio={ratio['without_pair_work']:.3f} "
          f"pair_share={ratio['full'] - ratio['without_pair_work']:.3f} {shares}")


if __name__ == "__main__":
    main()
