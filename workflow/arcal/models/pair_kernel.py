"""The source bank's kernels in C, for the CPU (docs/attnres.md, "Memory and speed").

An AttnRes consumer reads each of its sources forward, and backward each source needs, from
every consumer that read it, a weighted sum of their output gradients and one dot per consumer.
The bank is larger than the cache, so these pairs are paid in memory traffic. PyTorch has no
single operation that takes both backward reductions from one read of each gradient row;
``pair_kernel.c`` does (:func:`source_grads`), and it sums a consumer's sources in one read of
each (:func:`weighted_sum`). A consumer's own record in the backward pass (its gradient, its
output's dot with it, and the gradients of a partial block sum it read) is also one read of each
row (:func:`consumer_grads`), where PyTorch would take six passes or more. Elsewhere (a GPU, or
``ARCAL_PAIR_KERNEL=torch``) the bank uses PyTorch's operations for the same sums.

The C file is built on first use (:mod:`arcal.native`: ``$CC``, ``$ARCAL_KERNEL_CACHE``) and
runs on the OpenMP runtime PyTorch already loaded, with ``torch.get_num_threads()`` threads.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch

from ..native import library

__all__ = ["KERNELS", "consumer_grads", "native", "source_grads", "weighted_sum"]

KERNELS = ("native", "torch")
_SOURCE = Path(__file__).with_name("pair_kernel.c")
_FLAGS = ("-O3", "-fopenmp")
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _choice() -> str:
    kernel = os.environ.get("ARCAL_PAIR_KERNEL", "native")
    if kernel not in KERNELS:
        raise ValueError(f"ARCAL_PAIR_KERNEL={kernel!r}: expected one of {KERNELS}")
    return kernel


KERNEL = _choice()  # "native": the C kernels wherever they apply; "torch": PyTorch's everywhere


def native(t: torch.Tensor) -> bool:
    """Whether the bank holding ``t`` uses the C kernels: on the CPU, in fp32 or float64."""
    return KERNEL == "native" and t.device.type == "cpu" and t.dtype in _SUFFIX


def _kernel(name: str, dtype: torch.dtype):
    kernels = library(_SOURCE, _FLAGS, ", or set ARCAL_PAIR_KERNEL=torch to use PyTorch's kernels "
                                       "(slower on the CPU)")
    return getattr(kernels, f"arcal_{name}_{_SUFFIX[dtype]}")


def _ptr(t: torch.Tensor, like: torch.Tensor) -> ctypes.c_void_p:
    """``t``'s data for C, which reads it as a contiguous CPU array of ``like``'s dtype."""
    if t.device.type != "cpu" or t.dtype != like.dtype or not t.is_contiguous():
        raise ValueError(f"pair kernels take contiguous CPU {like.dtype} tensors, got a "
                         f"{'contiguous' if t.is_contiguous() else 'strided'} {t.device.type} {t.dtype} one")
    return ctypes.c_void_p(t.data_ptr())


def weighted_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_i weights[i] * values[i]``: values (k, ..., d), weights (k, ...), one dtype."""
    k, d = values.shape[0], values.shape[-1]
    out = values.new_empty(values.shape[1:])
    _kernel("weighted_sum", values.dtype)(
        _ptr(values, values), _ptr(weights, values), _ptr(out, values), ctypes.c_int64(k), ctypes.c_int64(out.numel() // d),
        ctypes.c_int64(d), ctypes.c_int(torch.get_num_threads()))
    return out


def source_grads(v: torch.Tensor, out_grads: torch.Tensor, weights: torch.Tensor,
                 out_dots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One source's gradients from the m consumers that read it.

    ``v`` (..., d) is the source, ``out_grads`` (m, ..., d) the consumers' output gradients,
    ``weights`` (m, ...) the source's weight at each and ``out_dots`` (m, ...) each consumer's
    output dotted with its gradient. Returns ``sum_l weights[l] * out_grads[l]`` (..., d), the
    gradient through the weighted sums, and ``weights * (v . out_grads - out_dots)`` (m, ...),
    the gradient of the source's logit at each consumer through its softmax.
    """
    m, d = out_grads.shape[0], v.shape[-1]
    grad, logits = torch.empty_like(v), weights.new_empty(weights.shape)
    _kernel("source_grads", v.dtype)(
        *(_ptr(t, v) for t in (v, out_grads, weights, out_dots, grad, logits)),
        ctypes.c_int64(m), ctypes.c_int64(v.numel() // d), ctypes.c_int64(d),
        ctypes.c_int(torch.get_num_threads()))
    return grad, logits


def consumer_grads(g: torch.Tensor, out: torch.Tensor, out_grad: torch.Tensor, out_dot: torch.Tensor,
                   partial: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Record one consumer in the backward pass from its output gradient ``g`` and its output
    ``out`` (..., d): copies ``g`` into ``out_grad`` and writes ``out . g`` into ``out_dot``
    (...), in one read of each. ``partial`` is ``(p, a, r, s, u)`` for a consumer that also read a
    partial block sum ``p`` (..., d) with weight ``a``, inverse RMS ``r`` and logit ``s`` (...)
    against the folded query ``u`` (d); then returns ``p``'s gradient, through the weighted sum and
    through its logit, and its logit's gradient times ``r`` (docs/attnres.md, "Memory and speed").
    """
    d = g.shape[-1]
    p, a, r, s, u = partial if partial is not None else (None,) * 5
    gp = gsr = None
    if p is not None:
        gp, gsr = torch.empty_like(p), torch.empty_like(a)
    _kernel("consumer_grads", g.dtype)(  # NULL for the partial sum's arrays when there is none
        *(ctypes.c_void_p(None) if t is None else _ptr(t, g)
          for t in (g, out, p, a, r, s, u, out_grad, out_dot, gp, gsr)),
        ctypes.c_int64(g.numel() // d), ctypes.c_int64(d), ctypes.c_int(torch.get_num_threads()))
    return None if p is None else (gp, gsr)
