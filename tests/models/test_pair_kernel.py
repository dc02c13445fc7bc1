"""The C kernels of the source bank (arcal.models.pair_kernel) against the formulas they
compute, written with plain PyTorch operations, in both dtypes; their independence of the thread
count; and the errors a bad input, a bad setting or a missing compiler give."""

import pytest
import torch

from arcal.models import pair_kernel


def _tensors(dtype, m=5, shape=(3, 7), d=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(*shape, d, generator=g, dtype=dtype)
    out_grads = torch.randn(m, *shape, d, generator=g, dtype=dtype)
    weights = torch.rand(m, *shape, generator=g, dtype=dtype)
    out_dots = torch.randn(m, *shape, generator=g, dtype=dtype)
    return v, out_grads, weights, out_dots


# the kernels take inputs four at a time and tokens 32 at a time: whole groups and chunks, a group
# and a chunk left over, and fewer inputs or tokens than one of them
SIZES = [(1, (3, 7)), (4, (2, 16)), (7, (3, 30))]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m,shape", SIZES)
def test_source_grads_match_their_formulas(dtype, m, shape):
    v, out_grads, weights, out_dots = _tensors(dtype, m=m, shape=shape)
    grad, logits = pair_kernel.source_grads(v, out_grads, weights, out_dots)
    torch.testing.assert_close(grad, (weights.unsqueeze(-1) * out_grads).sum(0))
    torch.testing.assert_close(logits, weights * ((v * out_grads).sum(-1) - out_dots))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k,shape", SIZES)
def test_weighted_sum_matches_its_formula(dtype, k, shape):
    _, values, weights, _ = _tensors(dtype, m=k, shape=shape, d=33)
    out = pair_kernel.weighted_sum(values, weights)
    torch.testing.assert_close(out, (weights.unsqueeze(-1) * values).sum(0))


def _consumer(dtype, shape, d, partial, seed=1):
    g = torch.Generator().manual_seed(seed)
    grad, out, p = (torch.randn(*shape, d, generator=g, dtype=dtype) for _ in range(3))
    a, r = torch.rand(*shape, generator=g, dtype=dtype), torch.rand(*shape, generator=g, dtype=dtype) + 0.5
    u = torch.randn(d, generator=g, dtype=dtype)
    s = r * (p * u).sum(-1)
    return grad, out, (p, a, r, s, u) if partial else None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,d", [((3, 7), 40), ((2, 33), 16), ((1, 5), 7)])
@pytest.mark.parametrize("partial", [False, True])
def test_consumer_grads_match_their_formulas(dtype, shape, d, partial):
    """d = 40 and 7 leave channels over after whole runs of 16 lanes; 16 leaves none."""
    g, out, part = _consumer(dtype, shape, d, partial)
    out_grad, out_dot = torch.full_like(g, torch.nan), torch.full(shape, torch.nan, dtype=dtype)
    got = pair_kernel.consumer_grads(g, out, out_grad, out_dot, part)
    assert torch.equal(out_grad, g)
    torch.testing.assert_close(out_dot, (out * g).sum(-1))
    if not partial:
        assert got is None
        return
    p, a, r, s, u = part
    gsr = a * ((p * g).sum(-1) - out_dot) * r
    want = a.unsqueeze(-1) * g + gsr.unsqueeze(-1) * u - (gsr * s * r / d).unsqueeze(-1) * p
    torch.testing.assert_close(got[0], want)
    torch.testing.assert_close(got[1], gsr)


def test_results_do_not_depend_on_the_thread_count():
    v, out_grads, weights, out_dots = _tensors(torch.float32, m=9, shape=(64, 17), d=96)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 3):
            torch.set_num_threads(n)
            g, out, part = _consumer(torch.float32, (64, 17), 96, partial=True)
            out_grad, out_dot = torch.empty_like(g), torch.empty(64, 17)
            results.append((*pair_kernel.source_grads(v, out_grads, weights, out_dots),
                            pair_kernel.weighted_sum(out_grads, weights),
                            *pair_kernel.consumer_grads(g, out, out_grad, out_dot, part), out_dot))
    finally:
        torch.set_num_threads(threads)
    for one, several in zip(*results):
        assert torch.equal(one, several)


def test_bad_tensors_are_refused_before_c_reads_them():
    v, out_grads, weights, out_dots = _tensors(torch.float32)
    with pytest.raises(ValueError, match="contiguous CPU torch.float32"):
        pair_kernel.source_grads(v, out_grads, weights.transpose(1, 2).contiguous().transpose(1, 2), out_dots)
    with pytest.raises(ValueError, match="torch.float64"):
        pair_kernel.weighted_sum(out_grads, weights.double())


def test_the_setting_is_checked(monkeypatch):
    monkeypatch.setenv("ARCAL_PAIR_KERNEL", "fast")
    with pytest.raises(ValueError, match=r"ARCAL_PAIR_KERNEL='fast'.*'native', 'torch'"):
        pair_kernel._choice()
    monkeypatch.setattr(pair_kernel, "KERNEL", "torch")
    assert not pair_kernel.native(torch.zeros(1))


def test_a_missing_compiler_says_what_to_do(no_compiler):
    with pytest.raises(RuntimeError, match="could not build.*not found.*ARCAL_PAIR_KERNEL=torch"):
        pair_kernel.weighted_sum(torch.zeros(1, 2, 3), torch.zeros(1, 2))
    assert not list(no_compiler.glob("*.so"))  # no partial library left to be loaded


def test_the_library_is_built_once_into_the_cache(kernel_cache):
    out = pair_kernel.weighted_sum(torch.ones(2, 3, 4), torch.full((2, 3), 0.5))
    torch.testing.assert_close(out, torch.ones(3, 4))
    assert [p.name for p in kernel_cache.iterdir()] == [p.name for p in kernel_cache.glob("pair_kernel-*.so")]
    assert len(list(kernel_cache.iterdir())) == 1
