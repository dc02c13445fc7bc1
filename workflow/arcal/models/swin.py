"""Stage-local AttnRes Swin Transformer on timm's ``SwinTransformer`` (research/attnres.md 5.4).

Sources of different Swin stages have different grids and widths, so each stage is its own AttnRes
stack: source 0 is the stage input (the patch embedding for stage 0, the ``PatchMerging`` output
for later stages), the values are the stage's sub-layer outputs on NHWC tensors

    f_attn(h) = drop_path1(_attn(norm1(h)))      f_mlp(h) = drop_path2(mlp(norm2(h))),

and a stage-final mixer (consumer "layers.{s}.out") forms the stage output that feeds the next
``PatchMerging`` or the final norm. Block AttnRes counts ``block_size`` sub-layers per block within
a stage (4 = one W-MSA/SW-MSA pair); blocks never cross stages. The first mixer of every stage has a
single source. Mixers live in ``self.attnres`` in forward order; timm's names are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn
from torch.utils.checkpoint import checkpoint

from arcal.models.attnres import AttnResBackbone, DepthMixer, DepthStream, consumer_source_counts

__all__ = ["AttnResSwinTransformer"]


def _attn_delta(blk: SwinTransformerBlock, h: torch.Tensor) -> torch.Tensor:
    return blk.drop_path1(blk._attn(blk.norm1(h)))


def _mlp_delta(blk: SwinTransformerBlock, h: torch.Tensor) -> torch.Tensor:
    # timm flattens to (B, HW, C) first; LayerNorm and the MLP act on the last axis only.
    return blk.drop_path2(blk.mlp(blk.norm2(h)))


class AttnResSwinTransformer(AttnResBackbone, SwinTransformer):
    """timm ``SwinTransformer`` with baseline, Full or Block stage-local AttnRes residuals.

    Args:
        residual: "baseline" (timm's residual sums), "full" or "block".
        block_size: sub-layers per AttnRes block within a stage for "block".
        attnres_eps: epsilon of the key RMSNorm.
        **kwargs: ``SwinTransformer`` arguments (img_size, patch_size, window_size, depths, ...).
    """

    def __init__(self, *, residual: str = "baseline", block_size: int = 4, attnres_eps: float = 1e-6,
                 **kwargs: Any) -> None:
        stream_bs = self.stream_block_size(residual, block_size)
        super().__init__(**kwargs)
        self._set_residual(residual, stream_bs, attnres_eps)
        self.has_class_token = False
        if residual == "baseline":
            return
        mixers = []
        for s, stage in enumerate(self.layers):
            depth = len(stage.blocks)
            names = [f"layers.{s}.blocks.{k}.{p}" for k in range(depth) for p in ("attn", "mlp")]
            counts = consumer_source_counts(2 * depth, stream_bs)
            dim = stage.blocks[0].dim
            mixers += [DepthMixer(dim, n, name) for n, name in zip(counts, names + [f"layers.{s}.out"])]
        self.attnres = nn.ModuleList(mixers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding, the stages with the chosen residuals, final norm (NHWC output)."""
        if self.routing_trace is not None:
            self.routing_trace.begin_batch(x.shape[0])
        if self.attnres is None:
            return super().forward_features(x)
        x = self.patch_embed(x)
        start = 0
        for stage in self.layers:
            x = stage.downsample(x)
            stop = start + 2 * len(stage.blocks) + 1
            stream = DepthStream(x, self.attnres[start:stop], self.attnres_block_size, self.attnres_eps)
            start = stop
            ckpt = stage.grad_checkpointing and self.training and not torch.jit.is_scripting()
            for blk in stage.blocks:
                for fn in (_attn_delta, _mlp_delta):
                    h = stream.mix()
                    stream.push(checkpoint(fn, blk, h, use_reentrant=False) if ckpt else fn(blk, h))
            x = stream.finish()
        return self.norm(x)
