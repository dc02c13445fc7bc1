"""AttnRes vision backbones (timm ViT and Swin) with baseline, Full and Block residuals.

Public API::

    model = create_model("deit_s", "block", num_classes=10, img_size=32, in_chans=3)
    with routing_capture(model) as trace:
        logits = model(x)
    batch = trace.result()          # arcal.routing.RoutingBatch
    with attention_capture(model) as attn:   # every variant, baselines included
        logits = model(x)
    attn.result().A                 # (B, attention layers) normalised attention entropies
"""

from arcal.models.attention import AttentionBatch, attention_capture
from arcal.models.attnres import RESIDUALS, DepthMixer, RoutingTrace, routing_capture
from arcal.models.registry import SUBSTRATES, LoadReport, Substrate, create_model, load_backbone_checkpoint
from arcal.models.swin import AttnResSwinTransformer
from arcal.models.vit import AttnResVisionTransformer

VARIANTS = RESIDUALS

__all__ = [
    "AttentionBatch",
    "attention_capture",
    "SUBSTRATES",
    "VARIANTS",
    "AttnResSwinTransformer",
    "AttnResVisionTransformer",
    "DepthMixer",
    "LoadReport",
    "RoutingTrace",
    "Substrate",
    "create_model",
    "load_backbone_checkpoint",
    "routing_capture",
]
