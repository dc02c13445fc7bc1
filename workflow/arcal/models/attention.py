"""Attention entropy per layer: the trace every model leaves, baselines included.

A standard-residual model has no routing trace, but each of its attention layers forms, for
every query token, a probability vector over keys. The dump records one number per image and
attention layer l (docs/methods.md, "Attention entropy"):

* ViT (timm ``Attention``): the entropy of the class token's attention over the N keys (the
  class token and the patches), divided by log N, averaged over heads. Without a class token,
  the same averaged over every query token.
* Swin (timm ``WindowAttention``): the entropy of every query token's attention over the M keys
  of its window (M = window area), divided by log M, averaged over heads, query tokens and the
  windows of the image. A shifted window's mask adds -100 to the logits of keys from another
  region, so those keys hold about e^-100 of the weight and such a window's entropy stays below 1.

So ``A_l`` lies in [0, 1] and is 1 for uniform attention; ``attn_entropy = mean_l A_l``.

How it is read: timm computes attention with the fused scaled-dot-product kernel, which never
forms the weights. Inside :func:`attention_capture` every attention module takes timm's own
non-fused path (its ``fused_attn`` flag is set to False), in which the softmaxed weights pass
through the module's ``attn_drop`` (the identity in evaluation mode); a forward hook on it reads
them and reduces them at once to per-image numbers, so nothing of size tokens^2 is kept. On exit
the flags are restored and the hooks removed: training and every other evaluation keep the fused
kernel. The non-fused path is the same arithmetic in another order, so logits agree with the
fused ones to float32 rounding.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from timm.layers import Attention
from timm.models.swin_transformer import WindowAttention
from torch import nn

from arcal.routing import normalised_entropy

__all__ = ["AttentionBatch", "AttentionTrace", "attention_capture", "attention_layers"]


@dataclass
class AttentionBatch:
    """Attention entropies of B images: ``A`` (B, L) float32 in [0, 1], one column per attention
    layer named in ``layers`` (module paths in depth order, e.g. "blocks.3.attn")."""

    A: np.ndarray
    layers: list[str]

    @property
    def mean(self) -> np.ndarray:
        """``attn_entropy``: the mean over layers per image (float32, computed in float64)."""
        return self.A.mean(axis=1, dtype=np.float64).astype(np.float32)


def attention_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) pairs of timm's ViT and Swin attention layers in ``model``, in order."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (Attention, WindowAttention))]


class AttentionTrace:
    """Per-image attention entropies collected while :func:`attention_capture` is active."""

    def __init__(self, names: list[str], cls_index: int | None) -> None:
        self.names = names
        self.cls_index = cls_index
        self._batch = 0
        self._parts: list[list[np.ndarray]] = [[] for _ in names]

    def begin_batch(self, n_images: int) -> None:
        self._batch = int(n_images)

    @torch.no_grad()
    def record(self, index: int, module: nn.Module, weights: torch.Tensor) -> None:
        """Reduce one layer's weights (images x windows, heads, queries, keys) to (B,)."""
        if isinstance(module, WindowAttention) or self.cls_index is None:
            # rows of a Swin layer are image-major (timm's window_partition): image b holds rows
            # b * n_windows ... (b + 1) * n_windows - 1
            per_image = normalised_entropy(weights.float(), dim=-1).reshape(self._batch, -1).mean(1)
        else:
            per_image = normalised_entropy(weights[:, :, self.cls_index, :].float(), dim=-1).mean(1)
        self._parts[index].append(per_image.cpu().numpy())

    def result(self) -> AttentionBatch:
        """The entropies of all images seen so far."""
        cols = [np.concatenate(p) if p else np.zeros(0, np.float32) for p in self._parts]
        n = {c.shape[0] for c in cols}
        if len(n) != 1:
            raise RuntimeError(f"attention layers recorded different numbers of images: {sorted(n)}")
        return AttentionBatch(np.stack(cols, axis=1).astype(np.float32), list(self.names))


@contextlib.contextmanager
def attention_capture(model: nn.Module) -> Iterator[AttentionTrace]:
    """Record the attention entropy of every timm attention layer of ``model`` (module docstring)
    for every forward pass inside the ``with`` block; ``trace.result()`` holds them."""
    layers = attention_layers(model)
    if not layers:
        raise ValueError(f"attention_capture: {type(model).__name__} has no timm ViT or Swin "
                         "attention layers")
    if getattr(model, "_attention_trace", None) is not None:
        raise ValueError("attention_capture: the model is already capturing; do not nest captures")
    cls_index = 0 if getattr(model, "has_class_token", False) else None
    trace = AttentionTrace([name for name, _ in layers], cls_index)
    fused = [m.fused_attn for _, m in layers]
    handles = [model.register_forward_pre_hook(lambda _m, args: trace.begin_batch(args[0].shape[0]))]
    for i, (_, m) in enumerate(layers):
        m.fused_attn = False
        handles.append(m.attn_drop.register_forward_hook(
            lambda _d, args, _out, i=i, m=m: trace.record(i, m, args[0])))
    model._attention_trace = trace
    try:
        yield trace
    finally:
        model._attention_trace = None
        for h in handles:
            h.remove()
        for (_, m), flag in zip(layers, fused):
            m.fused_attn = flag
