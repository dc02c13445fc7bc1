"""Stage-local AttnRes Swin Transformer on timm's ``SwinTransformer`` (docs/attnres.md, "Stage-local Swin").

Sources of different Swin stages have different grids and widths, so each stage is its own AttnRes
stack: source 0 is the stage input (the patch embedding for stage 0, the ``PatchMerging`` output
for later stages), the values are the stage's sub-layer outputs on NHWC tensors

    f_attn(h) = drop_path1(_attn(norm1(h)))      f_mlp(h) = drop_path2(mlp(norm2(h))),

and a stage-final mixer (consumer "layers.{s}.out") forms the stage output that feeds the next
``PatchMerging`` or the final norm. Blocks never cross stages. The first mixer of every stage has a
single source. Mixers live in ``self.attnres`` in forward order; timm's names are unchanged.

Block partition (``min_stage_blocks``, default :data:`MIN_STAGE_BLOCKS` = 2). Block AttnRes counts
``block_size`` S sub-layers per block (4 = two Swin blocks, one W-MSA/SW-MSA pair), lowered in a
stage too shallow to hold ``min_stage_blocks`` blocks of S: the stage of L_s sub-layers uses
``min(S, max(1, L_s // min_stage_blocks))`` (:func:`~arcal.models.attnres.stack_block_size`).
Why: Swin-T's stages hold 4, 4, 12 and 4 sub-layers, so a uniform S = 4 leaves three of the four
stages a single block. A single block reduces Block AttnRes to the paper's N = 1 case: every
consumer of the stage sees the stage input and the partial sum only, two sources, whose normalised
entropy and depth variance are then monotone functions of each other per token (16 of Swin-T's 24
routed consumers). Two blocks per stage is the least that lets a consumer weigh finished blocks.
With S = 4 and the default, Swin-T's stages use S = 2, 2, 4, 2 (2, 2, 3, 2 blocks);
``min_stage_blocks = 1`` restores a uniform S.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn
from torch.utils.checkpoint import checkpoint

from arcal.models.attnres import (
    AttnResBackbone,
    BankBuffers,
    DepthMixer,
    DepthStream,
    consumer_source_counts,
    stack_block_size,
)

__all__ = ["MIN_STAGE_BLOCKS", "AttnResSwinTransformer"]

#: Default least number of Block-AttnRes blocks per stage (see the module docstring for why).
MIN_STAGE_BLOCKS = 2


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
        min_stage_blocks: least number of blocks per stage for "block"; shallower stages use
            smaller blocks (module docstring). 1 keeps ``block_size`` in every stage.
        attnres_eps: epsilon of the key RMSNorm.
        **kwargs: ``SwinTransformer`` arguments (img_size, patch_size, window_size, depths, ...).
    ``attnres_stage_block_sizes`` holds the sub-layers per block of each stage (empty for the
    baseline, all 1 for Full).
    """

    def __init__(self, *, residual: str = "baseline", block_size: int = 4,
                 min_stage_blocks: int = MIN_STAGE_BLOCKS, attnres_eps: float = 1e-6, **kwargs: Any) -> None:
        stream_bs = self.stream_block_size(residual, block_size)
        if not isinstance(min_stage_blocks, int) or isinstance(min_stage_blocks, bool) or min_stage_blocks < 1:
            raise ValueError(f"min_stage_blocks={min_stage_blocks!r}: expected an integer >= 1 (blocks per stage)")
        super().__init__(**kwargs)
        self._set_residual(residual, stream_bs, attnres_eps)
        self.has_class_token = False
        self.attnres_stage_block_sizes: tuple[int, ...] = ()
        if residual == "baseline":
            return
        self.attnres_stage_block_sizes = tuple(
            stack_block_size(2 * len(stage.blocks), stream_bs, min_stage_blocks) for stage in self.layers
        )
        mixers = []
        for s, (stage, bs) in enumerate(zip(self.layers, self.attnres_stage_block_sizes)):
            depth = len(stage.blocks)
            names = [f"layers.{s}.blocks.{k}.{p}" for k in range(depth) for p in ("attn", "mlp")]
            counts = consumer_source_counts(2 * depth, bs)
            dim = stage.blocks[0].dim
            mixers += [DepthMixer(dim, n, name) for n, name in zip(counts, names + [f"layers.{s}.out"])]
        self.attnres = nn.ModuleList(mixers)
        self.attnres_buffers = [BankBuffers() for _ in self.layers]  # one per AttnRes stack (stage)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding, the stages with the chosen residuals, final norm (NHWC output)."""
        if self.routing_trace is not None:
            self.routing_trace.begin_batch(x.shape[0])
        if self.attnres is None:
            return super().forward_features(x)
        x = self.patch_embed(x)
        start = 0
        for stage, block_size, buffers in zip(self.layers, self.attnres_stage_block_sizes, self.attnres_buffers):
            x = stage.downsample(x)
            stop = start + 2 * len(stage.blocks) + 1
            stream = DepthStream(x, self.attnres[start:stop], block_size, self.attnres_eps, buffers)
            start = stop
            ckpt = stage.grad_checkpointing and self.training and not torch.jit.is_scripting()
            for blk in stage.blocks:
                for fn in (_attn_delta, _mlp_delta):
                    h = stream.mix()
                    stream.push(checkpoint(fn, blk, h, use_reentrant=False) if ckpt else fn(blk, h))
            x = stream.finish()
        return self.norm(x)
