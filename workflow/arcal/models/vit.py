"""AttnRes Vision Transformer: timm's ``VisionTransformer`` with its residuals made switchable.

One class for every residual variant (``baseline``, ``full``, ``block``). The baseline runs timm's
own ``forward_features`` unchanged; the AttnRes variants replace the two residual additions of
each timm ``Block`` by depth mixers (docs/attnres.md, "The ViT"), calling the block's own modules:

    f_attn(h) = drop_path1(ls1(attn(norm1(h))))      f_mlp(h) = drop_path2(ls2(mlp(norm2(h))))

The 2 * depth + 1 mixers live in ``self.attnres`` (a ``ModuleList`` created after timm's init, so
their zero queries survive it); all timm module and parameter names are unchanged, so a timm
checkpoint of the same backbone loads with only ``attnres.*`` keys missing.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn
from torch.utils.checkpoint import checkpoint

from arcal.models.attnres import AttnResBackbone, BankBuffers, DepthMixer, DepthStream, consumer_source_counts

__all__ = ["AttnResVisionTransformer"]


def _attn_delta(blk: Block, h: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool) -> torch.Tensor:
    return blk.drop_path1(blk.ls1(blk.attn(blk.norm1(h), attn_mask=attn_mask, is_causal=is_causal)))


def _mlp_delta(blk: Block, h: torch.Tensor) -> torch.Tensor:
    return blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(h))))


class AttnResVisionTransformer(AttnResBackbone, VisionTransformer):
    """timm ``VisionTransformer`` with baseline, Full or Block AttnRes residuals.

    Args:
        residual: "baseline" (timm's residual sums), "full" or "block".
        block_size: sub-layers (attention or MLP) per AttnRes block for "block"; 4 = two
            transformer blocks (docs/attnres.md).
        attnres_eps: epsilon of the key RMSNorm.
        **kwargs: ``VisionTransformer`` arguments (img_size, patch_size, embed_dim, depth, ...).
    """

    def __init__(self, *, residual: str = "baseline", block_size: int = 4, attnres_eps: float = 1e-6,
                 **kwargs: Any) -> None:
        stream_bs = self.stream_block_size(residual, block_size)
        super().__init__(**kwargs)
        self._set_residual(residual, stream_bs, attnres_eps)
        if residual == "baseline":
            return
        names = [f"blocks.{k}.{part}" for k in range(len(self.blocks)) for part in ("attn", "mlp")] + ["out"]
        counts = consumer_source_counts(2 * len(self.blocks), stream_bs)
        self.attnres = nn.ModuleList(DepthMixer(self.embed_dim, n, name) for n, name in zip(counts, names))
        self.attnres_buffers = [BankBuffers()]  # one per AttnRes stack, as for Swin

    def forward_features(self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None,
                         is_causal: bool = False) -> torch.Tensor:
        """Embedding, the blocks with the chosen residuals, final norm (same contract as timm's)."""
        if self.routing_trace is not None:
            self.routing_trace.begin_batch(x.shape[0])
        if self.attnres is None:
            return super().forward_features(x, attn_mask=attn_mask, is_causal=is_causal)
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        stream = DepthStream(x, self.attnres, self.attnres_block_size, self.attnres_eps, self.attnres_buffers[0])
        ckpt = self.grad_checkpointing and self.training and not torch.jit.is_scripting()
        for k, blk in enumerate(self.blocks):
            h = stream.mix()
            if ckpt:
                out = checkpoint(_attn_delta, blk, h, attn_mask, is_causal, use_reentrant=False)
            else:
                out = _attn_delta(blk, h, attn_mask, is_causal)
            stream.push(out)
            h = stream.mix()
            stream.push(checkpoint(_mlp_delta, blk, h, use_reentrant=False) if ckpt else _mlp_delta(blk, h))
        return self.norm(stream.finish())
