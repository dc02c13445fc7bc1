"""Routing-trace summaries of AttnRes depth-mixing weights (docs/methods.md, "Routing summaries").

Every AttnRes consumer l (a pre-attention, pre-MLP or output mixer) turns its ``n_l`` sources into
a probability vector ``a`` over depth for every image and token. The summaries here reduce those
weights to per-image numbers that the calibration analyses use as features:

* normalised entropy ``H = -sum_i a_i log a_i / log n_l``: 1 for uniform weights (the zero-init
  state), 0 when all weight sits on one source;
* normalised routing-depth variance ``V = sum_i a_i (d_i - mu)^2 / var_U(d)`` with
  ``mu = sum_i a_i d_i``, where ``d_i`` are the sources' depth coordinates and ``var_U(d)`` is the
  variance of the uniform distribution over the same coordinates (:func:`depth_variance` divided
  by :func:`uniform_variance`), so ``V = 1`` at init;
* per image, ``r_agg = mean_l H_l`` and ``depth_var = mean_l V_l`` (:func:`summarise`).

The weight functions take torch tensors with the source axis first, ``(n, ...)``, and reduce it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "RoutingBatch",
    "depth_moments",
    "depth_variance",
    "normalised_entropy",
    "summarise",
    "uniform_variance",
]


def uniform_variance(coords: Sequence[float]) -> float:
    """Variance of the uniform distribution over ``coords``: (n^2 - 1) / 12 for 0, 1, ..., n-1.

    Used to normalise the routing-depth variance so that uniform weights give exactly 1.
    Raises ``ValueError`` for fewer than two distinct coordinates (the variance is then 0).
    """
    d = np.asarray(coords, dtype=np.float64)
    var = float(np.mean((d - d.mean()) ** 2)) if d.size else 0.0
    if d.ndim != 1 or var <= 0.0:
        raise ValueError(
            f"coords={list(d.ravel())}: need at least two distinct depth coordinates to normalise "
            "a routing-depth variance"
        )
    return var


def normalised_entropy(alpha: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Entropy over ``dim`` (the source axis by default) divided by log n: 1 for uniform weights,
    in [0, 1].

    ``alpha`` has n >= 2 entries along ``dim`` and sums to 1 over it; the result drops ``dim``.
    ``0 log 0`` is taken as 0: the log is taken of ``alpha`` clamped at the dtype's smallest normal
    number, which is finite, so a zero weight adds ``0 * log(tiny) = 0``. (One vectorised log;
    ``torch.special.entr`` is a scalar loop on the CPU, 1.6-1.9 times slower at routing-trace
    sizes, and routing capture runs this at every consumer.) Attention maps use ``dim=-1`` (the
    keys).
    """
    n = alpha.shape[dim]
    if n < 2:
        raise ValueError(f"alpha has {n} entries along dim {dim}; normalised entropy needs at least 2")
    log_alpha = alpha.clamp_min(torch.finfo(alpha.dtype).tiny).log_()
    return (alpha * log_alpha).sum(dim) / -math.log(n)


def depth_moments(coords: torch.Tensor) -> torch.Tensor:
    """The (2, n) matrix :func:`depth_variance` applies to the weights: the centred coordinates
    ``c = coords - mean(coords)`` and their squares. Made once per source count by the caller."""
    if coords.dim() != 1:
        raise ValueError(f"coords has shape {tuple(coords.shape)}; expected one coordinate per source, (n,)")
    c = coords - coords.mean()
    return torch.stack([c, c * c])


def depth_variance(alpha: torch.Tensor, moments: torch.Tensor) -> torch.Tensor:
    """Routing-depth variance sum_i a_i (d_i - mu)^2, mu = sum_i a_i d_i, over dim 0 of ``alpha``.

    ``moments`` is :func:`depth_moments` of the sources' depth coordinates d (docs/attnres.md,
    "The mechanism"). The variance is ``E[c^2] - E[c]^2`` from one matrix product of that matrix
    with ``alpha``, which reads the weights once. Centring keeps the cancellation at the rounding
    of ``max c^2`` (about 1e-7 of the uniform variance in fp32); the result is clamped at 0, where
    that rounding could leave a one-hot routing slightly negative.
    """
    if moments.shape != (2, alpha.shape[0]):
        raise ValueError(f"moments has shape {tuple(moments.shape)}; expected (2, {alpha.shape[0]}), "
                         "depth_moments of one coordinate per source")
    mean, mean_sq = torch.tensordot(moments.to(alpha.dtype), alpha, dims=1)
    return (mean_sq - mean.square()).clamp_min_(0)


@dataclass
class RoutingBatch:
    """Routing summaries of a batch of B images over L consumers (numpy arrays on the CPU).

    Attributes:
        H: (B, L) float32, normalised token-mean entropy per consumer.
        V: (B, L) float32, normalised token-mean routing-depth variance per consumer.
        H_cls: (B, L) float32 normalised class-token entropy, or None without a class token.
        n_sources: (L,) int64, number of sources of each consumer.
        consumers: L consumer names in forward order ("blocks.3.attn", ..., "out").
        alpha_sum: L arrays of shape (n_l,), float64: the token-mean weight of every source,
            summed over the B images (divide by B for the mean routing profile).
        n_images: B.
    """

    H: np.ndarray
    V: np.ndarray
    H_cls: np.ndarray | None
    n_sources: np.ndarray
    consumers: list[str]
    alpha_sum: list[np.ndarray]
    n_images: int

    def __post_init__(self) -> None:
        L = len(self.consumers)
        shape = (self.n_images, L)
        for name in ("H", "V") + (("H_cls",) if self.H_cls is not None else ()):
            if getattr(self, name).shape != shape:
                raise ValueError(f"RoutingBatch.{name} has shape {getattr(self, name).shape}; expected {shape}")
        if self.n_sources.shape != (L,) or len(self.alpha_sum) != L:
            raise ValueError(f"RoutingBatch: n_sources/alpha_sum must have one entry per consumer ({L})")
        for name, n, a in zip(self.consumers, self.n_sources, self.alpha_sum):
            if a.shape != (int(n),):
                raise ValueError(f"RoutingBatch.alpha_sum for {name!r} has shape {a.shape}; expected ({n},)")


def summarise(batch: RoutingBatch) -> tuple[np.ndarray, np.ndarray]:
    """Per-image scalar features: ``r_agg = mean_l H_l`` and ``depth_var = mean_l V_l``.

    Both are means over all recorded consumers, output mixer included. With no consumers
    (the baseline, L = 0) the mean is undefined and both arrays are all-NaN, shape (B,).
    """
    if batch.H.shape[1] == 0:
        nan = np.full(batch.H.shape[0], np.nan, dtype=np.float32)
        return nan, nan.copy()
    return batch.H.mean(axis=1, dtype=np.float64).astype(np.float32), batch.V.mean(
        axis=1, dtype=np.float64
    ).astype(np.float32)
