"""Attention-entropy capture (arcal.models.attention): the definition, per image, restored state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from arcal.models import attention_capture, create_model
from arcal.models.attention import attention_layers


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-30).log()).sum(-1) / math.log(p.shape[-1])


def _model(substrate: str, variant: str, img: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(substrate, variant, 10, img, 1).eval()
    with torch.no_grad():  # sharper attention than at initialisation, so entropies differ
        for _, m in attention_layers(model):
            m.qkv.weight.mul_(6.0)
    return model


def test_vit_records_the_class_tokens_attention_entropy_of_each_layer() -> None:
    """Layer 0 of a baseline ViT, recomputed by hand from timm's modules: the class token's
    softmax over all keys, its entropy over log N, averaged over heads."""
    model = _model("vit_demo", "baseline", 28)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        with attention_capture(model) as trace:
            model(x)
        h = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
        attn = model.blocks[0].attn
        B, N, C = h.shape
        qkv = attn.qkv(model.blocks[0].norm1(h)).reshape(B, N, 3, attn.num_heads, -1)
        q, k = qkv.permute(2, 0, 3, 1, 4)[:2]
        weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(-1)  # (B, heads, N, N)
        expected = _entropy(weights[:, :, 0, :]).mean(1).numpy()
    result = trace.result()
    assert result.A.shape == (3, 4) and result.layers[0] == "blocks.0.attn"
    np.testing.assert_allclose(result.A[:, 0], expected, atol=1e-5)
    assert ((result.A > 0) & (result.A < 1)).all() and result.A.std() > 1e-3


def test_swin_averages_every_window_of_an_image_and_keeps_images_apart() -> None:
    """A 56-pixel image gives a 14x14 grid of 7x7 windows (4 per image in stage 0): layer 0
    (unshifted) recomputed by hand, and each image's entropies the same alone or in a batch."""
    model = _model("swin_demo", "full", 56)
    x = torch.randn(3, 1, 56, 56)
    with torch.no_grad():
        with attention_capture(model) as trace:
            model(x)
        with attention_capture(model) as alone:
            for i in range(3):
                model(x[i:i + 1])
        blk = model.layers[0].blocks[0]
        h = blk.norm1(model.layers[0].downsample(model.patch_embed(x)))  # (B, 14, 14, C)
        B, H, W, C = h.shape
        win = h.view(B, 2, 7, 2, 7, C).permute(0, 1, 3, 2, 4, 5).reshape(B * 4, 49, C)
        attn = blk.attn
        qkv = attn.qkv(win).reshape(B * 4, 49, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
        logits = (qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1) + attn._get_rel_pos_bias()
        expected = _entropy(logits.softmax(-1)).reshape(B, -1).mean(1).numpy()
    got, one_by_one = trace.result(), alone.result()
    assert got.layers == ["layers.0.blocks.0.attn", "layers.0.blocks.1.attn",
                          "layers.1.blocks.0.attn", "layers.1.blocks.1.attn"]
    np.testing.assert_allclose(got.A[:, 0], expected, atol=1e-5)
    np.testing.assert_allclose(got.A, one_by_one.A, atol=1e-6)
    assert np.ptp(got.A[:, 0]) > 1e-4  # the images differ, so a mix-up would show


@pytest.mark.parametrize("substrate", ["vit_demo", "swin_demo"])
def test_capture_changes_no_output_and_restores_the_fused_kernel(substrate: str) -> None:
    model = _model(substrate, "baseline", 28)
    flags = [m.fused_attn for _, m in attention_layers(model)]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        plain = model(x)
        with attention_capture(model):
            captured = model(x)
            with pytest.raises(ValueError, match="already capturing"):
                with attention_capture(model):
                    pass
        after = model(x)
    torch.testing.assert_close(captured, plain, rtol=1e-5, atol=1e-5)  # another order, same sums
    assert torch.equal(after, plain)
    assert [m.fused_attn for _, m in attention_layers(model)] == flags
    assert not any(m.attn_drop._forward_hooks for _, m in attention_layers(model))
