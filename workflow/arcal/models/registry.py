"""Named substrates (backbone configurations) and the model factory.

timm style: a registry of named configs, one configurable class per family
(:class:`~arcal.models.vit.AttnResVisionTransformer`,
:class:`~arcal.models.swin.AttnResSwinTransformer`). Patch and window sizes default to a rule of the
image size and can be overridden like any other timm keyword. Swin
substrates also take ``min_stage_blocks``, the Block-AttnRes block policy of their stages
(default :data:`~arcal.models.swin.MIN_STAGE_BLOCKS`, why in :mod:`arcal.models.swin`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from arcal.models.swin import MIN_STAGE_BLOCKS, AttnResSwinTransformer
from arcal.models.attnres import RESIDUALS
from arcal.models.vit import AttnResVisionTransformer

__all__ = ["SUBSTRATES", "LoadReport", "Substrate", "create_model", "load_backbone_checkpoint"]


@dataclass(frozen=True)
class Substrate:
    """A registered backbone: its family ("vit" or "swin"), timm keyword defaults and patch rule.

    ``min_grid`` is the smallest patch grid side the default patch size may give (larger patches
    are cheaper); ``max_patch`` caps the default patch size.
    """

    family: str
    config: Mapping[str, Any]
    min_grid: int
    max_patch: int
    description: str
    extra: Mapping[str, Any] = field(default_factory=dict)


SUBSTRATES: dict[str, Substrate] = {
    "deit_s": Substrate("vit", dict(embed_dim=384, depth=12, num_heads=6), 7, 16,
                        "DeiT-S / ViT-S: 384 wide, 12 blocks, 6 heads"),
    "vit_b16": Substrate("vit", dict(embed_dim=768, depth=12, num_heads=12), 7, 16,
                         "ViT-B: 768 wide, 12 blocks, 12 heads (patch 16 at 224, 4 at 32)"),
    "vit_tiny": Substrate("vit", dict(embed_dim=64, depth=6, num_heads=2, mlp_ratio=2.0), 7, 16,
                          "small ViT for CPU tests: 64 wide, 6 blocks, 2 heads, MLP ratio 2"),
    "vit_demo": Substrate("vit", dict(embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0), 4, 16,
                          "CPU demo ViT: 64 wide, 4 blocks, 4 heads, patch 7 at 28x28"),
    "swin_t": Substrate("swin", dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)), 14, 4,
                        "Swin-T: 96 wide, depths 2-2-6-2, heads 3-6-12-24"),
    "swin_tiny": Substrate("swin", dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                        mlp_ratio=2.0), 14, 4,
                           "small Swin for CPU tests: 32 wide, depths 2-2-2-2, MLP ratio 2"),
    "swin_demo": Substrate("swin", dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), mlp_ratio=2.0), 7, 4,
                           "CPU demo Swin: 32 wide, two stages of depth 2, patch 4 and window 7 at 28x28"),
}


def default_patch_size(img_size: int, min_grid: int, max_patch: int) -> int:
    """Largest divisor p <= ``max_patch`` of ``img_size`` whose grid ``img_size / p`` is >= ``min_grid``.

    ViT (min grid 7, max 16): 28 -> 4, 32 -> 4, 64 -> 8, 224 -> 16. Swin (min grid 14, max 4):
    28 -> 2, 32 -> 2, 64 -> 4, 224 -> 4.
    """
    ok = [p for p in range(1, max_patch + 1) if img_size % p == 0 and img_size // p >= min_grid]
    return max(ok) if ok else 1


def default_window_size(grid: int) -> int:
    """Swin window for a stage-0 grid: 7 where it tiles the grid (28/2, 224/4), else 4 (32/2, 64/4)."""
    if grid % 7 == 0:
        return 7
    return 4 if grid % 4 == 0 else min(7, grid)


def create_model(substrate: str, variant: str, num_classes: int, img_size: int, in_chans: int,
                 block_size: int = 4, drop_path_rate: float = 0.0, **overrides: Any) -> nn.Module:
    """Build ``substrate`` with residual ``variant`` ("baseline", "full" or "block").

    ``overrides`` are timm keyword arguments that replace the registered config (embed_dim,
    depth, num_heads, patch_size, window_size, ...) and, for Swin substrates, ``min_stage_blocks``.
    The result maps (B, in_chans, img_size, img_size) images to (B, num_classes) logits and carries
    ``arcal_config``: the keyword arguments that rebuild it with ``create_model(**model.arcal_config)``
    (image-size-dependent defaults and the Swin block policy resolved).
    """
    if substrate not in SUBSTRATES:
        raise ValueError(f"substrate={substrate!r}: unknown; registered substrates are {sorted(SUBSTRATES)}")
    if variant not in RESIDUALS:
        raise ValueError(f"variant={variant!r}: expected one of {RESIDUALS}")
    for name, value, lo in (("num_classes", num_classes, 1), ("img_size", img_size, 4), ("in_chans", in_chans, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise ValueError(f"{name}={value!r}: expected an integer >= {lo}")
    if not 0.0 <= float(drop_path_rate) < 1.0:
        raise ValueError(f"drop_path_rate={drop_path_rate!r}: expected a rate in [0, 1)")
    sub = SUBSTRATES[substrate]
    resolved = dict(overrides)
    if "patch_size" not in resolved:
        resolved["patch_size"] = default_patch_size(img_size, sub.min_grid, sub.max_patch)
    patch = resolved["patch_size"]
    if not isinstance(patch, int) or patch < 1 or img_size % patch:
        raise ValueError(f"patch_size={patch!r}: must be a positive divisor of img_size={img_size}")
    if sub.family == "swin":
        if "window_size" not in resolved:
            resolved["window_size"] = default_window_size(img_size // patch)
        resolved.setdefault("min_stage_blocks", MIN_STAGE_BLOCKS)
    elif "min_stage_blocks" in resolved:
        raise ValueError(f"min_stage_blocks={resolved['min_stage_blocks']!r}: a Swin stage policy, but substrate "
                         f"{substrate!r} is a {sub.family} (one stack; set block_size instead)")
    kwargs = {**sub.config, **resolved}
    common = dict(residual=variant, block_size=block_size, img_size=img_size, in_chans=in_chans,
                  num_classes=num_classes, drop_path_rate=float(drop_path_rate))
    cls = AttnResVisionTransformer if sub.family == "vit" else AttnResSwinTransformer
    model = cls(**common, **kwargs)
    model.arcal_config = dict(substrate=substrate, variant=variant, num_classes=num_classes, img_size=img_size,
                              in_chans=in_chans, block_size=block_size, drop_path_rate=float(drop_path_rate),
                              **resolved)
    return model


@dataclass(frozen=True)
class LoadReport:
    """Keys of a loaded state dict: model keys it lacked and keys the model does not have."""

    missing: list[str]
    unexpected: list[str]


def load_backbone_checkpoint(model: nn.Module, path: str | os.PathLike[str],
                             ignore: Sequence[str] = ()) -> LoadReport:
    """Load a timm state dict of the same backbone into ``model`` (any residual variant).

    Accepts a plain state dict or a dict holding one under "state_dict", "model" or
    "state_dict_ema". Keys starting with a prefix in ``ignore`` (e.g. "head.") are skipped. Missing
    AttnRes mixer keys (``attnres.*``, zero-initialised: the model starts as the checkpoint's
    function) are expected; any other missing key or a shape mismatch raises ``ValueError``
    naming the file. Returns the missing and unexpected keys.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone checkpoint {path!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: report which one
        raise ValueError(f"backbone checkpoint {path!r} cannot be read ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"backbone checkpoint {path!r} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in obj.items() if not k.startswith(tuple(ignore))}
    own = model.state_dict()
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad:
        raise ValueError(f"backbone checkpoint {path!r} does not match the model's shapes: {bad[:5]}"
                         + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(tuple(ignore))]
    foreign = [k for k in missing if not k.startswith("attnres.")]
    if foreign:
        raise ValueError(f"backbone checkpoint {path!r} lacks {len(foreign)} backbone keys of the model, "
                         f"e.g. {foreign[:5]}; is it the same backbone?")
    return LoadReport(missing=list(missing), unexpected=list(result.unexpected_keys))
