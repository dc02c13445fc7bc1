"""bench/ar_pair_share.py's timing probe: its stand-ins replace exactly the source bank's pair
kernels it is asked to replace while its context is open (so the probe still times a runnable
Full step), and the real kernels come back when it closes."""

import sys
from pathlib import Path

import torch

from arcal.models import create_model
from arcal.models.attnres import SourceBank

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from ar_pair_share import PAIR_KERNELS, STAND_INS, kernel_seconds, without_pair_work  # noqa: E402


def _step(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.square().sum().backward()
    return out.detach(), model.attnres[-1].query.grad.clone()


def test_stand_ins_replace_the_pair_kernels_and_are_undone():
    real = {name: getattr(SourceBank, name) for name in PAIR_KERNELS}
    torch.manual_seed(0)
    model = create_model("vit_tiny", "full", 10, 28, 1).train()
    for m in model.attnres:  # non-zero queries, so the mixing weights are not uniform
        torch.nn.init.normal_(m.query, std=0.5)
    x = torch.randn(4, 1, 28, 28)
    before = _step(model, x)
    with without_pair_work():
        assert all(getattr(SourceBank, name) is not real[name] for name in PAIR_KERNELS)
        probed = _step(model, x)
    assert all(getattr(SourceBank, name) is real[name] for name in PAIR_KERNELS)
    after = _step(model, x)
    torch.testing.assert_close(after[0], before[0])
    torch.testing.assert_close(after[1], before[1])
    assert torch.isfinite(probed[0]).all() and torch.isfinite(probed[1]).all()
    assert not torch.allclose(probed[0], before[0])


def test_one_kernel_at_a_time_leaves_the_others_real():
    real = {name: getattr(SourceBank, name) for name in PAIR_KERNELS}
    assert set(real) == {"weighted_sum", "source_grads"}
    for name in PAIR_KERNELS:
        with without_pair_work([name]):
            assert getattr(SourceBank, name) is STAND_INS[name]
            assert all(getattr(SourceBank, other) is real[other] for other in PAIR_KERNELS if other != name)
        assert getattr(SourceBank, name) is real[name]


def test_kernel_timing_times_every_kernel_and_restores_them():
    real = {name: getattr(SourceBank, name) for name in PAIR_KERNELS}
    torch.manual_seed(0)
    model = create_model("vit_tiny", "full", 10, 28, 1).train()
    x = torch.randn(4, 1, 28, 28)
    before = _step(model, x)
    inside, alone = kernel_seconds(lambda: _step(model, x), rounds=2)
    assert set(inside) == set(alone) == set(PAIR_KERNELS)
    assert all(inside[name] > 0 and alone[name] > 0 for name in PAIR_KERNELS)
    assert all(getattr(SourceBank, name) is real[name] for name in PAIR_KERNELS)
    torch.testing.assert_close(_step(model, x)[1], before[1])
