"""How much of the Full AttnRes training step's overhead is pair work, and how much is the rest.

Pair work is what every (consumer, source) pair costs: a consumer's weighted sum over its k
sources, their dots with its output gradient, and adding ``alpha_i g`` into each source's
gradient block (:class:`arcal.models.attnres.SourceBank`, docs/attnres.md, "Memory and speed").
The rest is per source or per consumer: copying a source into the bank, its RMS and scores and
their gradients, the softmax, and the cost of each operation.

Times, in interleaved rounds (``bench/ar_overhead.py``), the DeiT-S training step at 32x32, batch
32, CPU, fp32, of the baseline, of Full AttnRes, and of Full AttnRes with those three bank kernels
replaced by stand-ins that touch one source per consumer instead of k. The stand-ins make the
model's outputs and gradients wrong: this is a timing probe, and nothing else uses them. Their
ratio is the floor the rest of the routing leaves; the difference of the two ratios is the most
any faster pair kernel could gain.

Usage: python bench/ar_pair_share.py [--rounds 15] [--threads N]
The last line is ``full_ratio=<x> without_pair_work_ratio=<y> pair_share=<x - y>``.
"""

from __future__ import annotations

import contextlib
from typing import Callable
from unittest import mock

import torch

from ar_overhead import _train_step, interleaved_medians, timing_args
from arcal.models import create_model
from arcal.models.attnres import SourceBank


def _one_source_sum(bank: SourceBank, alpha: torch.Tensor) -> torch.Tensor:
    return bank.values[alpha.shape[0] - 1] * alpha[-1].unsqueeze(-1)


def _no_dots(bank: SourceBank, g: torch.Tensor, k: int) -> torch.Tensor:
    return g.new_zeros((k, *g.shape[:-1]))


def _no_accumulation(bank: SourceBank, alpha: torch.Tensor, g: torch.Tensor) -> None:
    return None


def without_pair_work() -> contextlib.ExitStack:
    """The bank's three pair kernels swapped for the stand-ins while the context is open."""
    stack = contextlib.ExitStack()
    for name, stand_in in (("weighted_sum", _one_source_sum), ("dots", _no_dots),
                           ("accumulate_grads", _no_accumulation)):
        stack.enter_context(mock.patch.object(SourceBank, name, stand_in))
    return stack


def _inside(context: Callable[[], contextlib.AbstractContextManager], step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with context():
            step()
    return run


def main() -> None:
    args = timing_args(__doc__, 15)
    torch.manual_seed(0)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    baseline, full = (create_model("deit_s", v, 10, 32, 3, patch_size=4).train() for v in ("baseline", "full"))
    t = interleaved_medians({
        "baseline": _train_step(baseline, x, y),
        "full": _train_step(full, x, y),
        "without_pair_work": _inside(without_pair_work, _train_step(full, x, y)),
    }, args.rounds)
    full_ratio, floor = t["full"] / t["baseline"], t["without_pair_work"] / t["baseline"]
    print(f"deit_s: train baseline {t['baseline'] * 1e3:.1f} ms, full {t['full'] * 1e3:.1f} ms, full "
          f"without pair work {t['without_pair_work'] * 1e3:.1f} ms")
    print(f"full_ratio={full_ratio:.3f} without_pair_work_ratio={floor:.3f} pair_share={full_ratio - floor:.3f}")


if __name__ == "__main__":
    main()
