"""The routing summaries (entropy, depth variance, the trace's per-image rows) against float64
references computed here from their definitions (docs/methods.md, "Routing summaries")."""

import numpy as np
import pytest
import scipy.stats
import torch

from arcal.models.attnres import DepthMixer, RoutingTrace
from arcal.routing import depth_moments, depth_variance, normalised_entropy, uniform_variance


def weights(n, shape, seed, dtype=torch.float32):
    """Softmax weights over n sources with a spread of sharpness, some exactly one-hot."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, *shape, generator=g, dtype=torch.float64) * torch.logspace(-1, 2, shape[-1], dtype=torch.float64)
    alpha = torch.softmax(logits, 0)
    alpha[..., -1] = 0  # one-hot on the deepest source: 0 log 0, and the largest E[c^2]
    alpha[-1, ..., -1] = 1
    return alpha.to(dtype)


def reference_variance(alpha, coords):
    a, d = np.asarray(alpha, np.float64), np.asarray(coords, np.float64).reshape((-1,) + (1,) * (alpha.dim() - 1))
    mu = (a * d).sum(0)
    return (a * (d - mu) ** 2).sum(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [2, 7, 25])
def test_entropy_and_depth_variance_match_their_definitions(n, dtype):
    alpha = weights(n, (3, 40), seed=n, dtype=dtype)
    want_h = scipy.stats.entropy(alpha.double().numpy(), base=n, axis=0)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    h = normalised_entropy(alpha)
    assert h.dtype == dtype
    np.testing.assert_allclose(h.numpy(), want_h, rtol=0, atol=tol)
    assert (h[..., -1] == 0).all()  # one-hot: exactly 0, no NaN from 0 log 0
    # the same along the last axis, as the attention maps use it
    np.testing.assert_allclose(normalised_entropy(alpha.movedim(0, -1), dim=-1).numpy(), want_h, rtol=0, atol=tol)

    coords = torch.arange(n, dtype=dtype)
    v = depth_variance(alpha, depth_moments(coords))
    want_v = reference_variance(alpha, coords)
    # the error bound the docstring states: rounding of max c^2, relative to the uniform variance
    np.testing.assert_allclose(v.numpy() / uniform_variance(range(n)), want_v / uniform_variance(range(n)),
                               rtol=0, atol=10 * tol)
    assert (v >= 0).all()
    # uniform weights: normalised entropy and normalised variance are exactly what they are named for
    flat = torch.full((n, 5), 1 / n, dtype=dtype)
    torch.testing.assert_close(normalised_entropy(flat), torch.ones(5, dtype=dtype))
    torch.testing.assert_close(depth_variance(flat, depth_moments(coords)) / uniform_variance(range(n)),
                               torch.ones(5, dtype=dtype))


def test_depth_moments_reject_a_mismatch():
    with pytest.raises(ValueError, match=r"expected \(2, 4\)"):
        depth_variance(torch.full((4, 3), 0.25), depth_moments(torch.arange(5.0)))
    with pytest.raises(ValueError, match="one coordinate per source"):
        depth_moments(torch.zeros(2, 3))


def test_trace_rows_are_the_per_image_token_means_of_the_summaries():
    """RoutingTrace over two batches, consumers of 1 (skipped), 3, 25 and 3 sources (the two of
    3 are reduced as one stack): H, V and the class token's H per image, and the token-mean weight
    sums, against numpy on the same weights."""
    counts = [1, 3, 25, 3]
    mixers = [DepthMixer(8, n, f"c{i}") for i, n in enumerate(counts)]
    trace = RoutingTrace(mixers, cls_index=0)
    recorded = [[] for _ in counts[1:]]
    for batch, (B, T) in enumerate([(4, 6), (3, 6)]):
        trace.begin_batch(B)
        for index, n in enumerate(counts[1:]):
            alpha = weights(n, (B, T), seed=10 * batch + index)
            recorded[index].append(alpha)
            trace.record(index, alpha)
    result = trace.result()
    assert result.n_images == 7 and result.consumers == ["c1", "c2", "c3"]
    for col, n in enumerate(counts[1:]):
        a = torch.cat(recorded[col], dim=1).double().numpy()  # (n, B, T)
        h = scipy.stats.entropy(a, base=n, axis=0)
        v = reference_variance(torch.from_numpy(a), np.arange(n)) / uniform_variance(range(n))
        np.testing.assert_allclose(result.H[:, col], h.mean(-1), rtol=0, atol=1e-6)
        np.testing.assert_allclose(result.V[:, col], v.mean(-1), rtol=0, atol=1e-5)
        np.testing.assert_allclose(result.H_cls[:, col], h[:, 0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(result.alpha_sum[col], a.mean(-1).sum(-1), rtol=1e-6)
    assert not np.allclose(result.H[:, 0], result.H[:, 2])  # the stacked two are told apart
