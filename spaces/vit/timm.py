"""Importing timm ``VisionTransformer`` state dicts as ``vit-elastic`` parents.

``convert(source, num_heads=...)`` reads the state dict (a mapping of tensors, or a
``.safetensors`` / ``.pt`` / ``.pth`` file), infers the network from the tensors' names and
shapes (width, depth, patch size, image size, MLP ratio, class token, pooling, layer scale),
checks every tensor against the network it describes, and returns the config and the
loaded :class:`~spaces.vit.plain.SuperPlainViT`. The number of heads is the one thing the
shapes do not tell (``qkv`` is ``3 * width`` rows whatever the split), so it is asked for.

Used through ``spaces.import_parent("vit-elastic", NAME, source, format="timm", num_heads=H)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .._checkpoints import check_state_dict, read_state_dict
from .._errors import CheckpointError
from .model import StageConfig, ViTConfig

__all__ = ["convert", "config_from_state_dict"]

# timm keys this importer has no layer for: a model with them is refused by name
_UNSUPPORTED = {"reg_token": "register tokens", "norm_pre.weight": "a pre-norm (norm_pre)",
                "blocks.0.attn.q_norm.weight": "query/key normalisation (qk_norm)",
                "head_dist.weight": "a distillation head (DeiT-distilled)", "attn_pool.latent": "attention pooling"}


def config_from_state_dict(sd: Mapping[str, Any], num_heads: int) -> ViTConfig:
    """The one-stage ``layout="plain"`` config a timm ViT state dict describes."""
    for key, what in _UNSUPPORTED.items():
        if key in sd:
            raise CheckpointError(f"timm state dict: {key!r} means {what}, which vit-elastic does not import")
    for key in ("patch_embed.proj.weight", "pos_embed", "head.weight", "blocks.0.attn.qkv.weight",
                "blocks.0.mlp.fc1.weight"):
        if key not in sd:
            raise CheckpointError(f"timm state dict: {key!r} is missing; not a timm VisionTransformer state dict "
                                  f"(keys start with: {', '.join(sorted(sd)[:5])})")
    if "blocks.0.attn.qkv.bias" not in sd:
        raise CheckpointError("timm state dict: 'blocks.0.attn.qkv.bias' is missing; models with qkv_bias=False "
                              "are not imported")
    width, cin, p, p2 = sd["patch_embed.proj.weight"].shape
    if p != p2:
        raise CheckpointError(f"timm state dict: patch_embed.proj.weight is {tuple(sd['patch_embed.proj.weight'].shape)}; "
                              "only square patches are imported")
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    inner = sd["blocks.0.attn.qkv.weight"].shape[0] // 3
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1 or inner % num_heads:
        raise CheckpointError(f"num_heads: got {num_heads!r}; valid: a positive divisor of the attention width "
                              f"{inner} (the model's config says it, e.g. 3 for vit_tiny, 6 for vit_small)")
    hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    if hidden % width:
        raise CheckpointError(f"timm state dict: the MLP hidden width {hidden} is not a multiple of the "
                              f"embedding width {width}; vit-elastic takes integer MLP ratios")
    class_token = "cls_token" in sd
    tokens = sd["pos_embed"].shape[1] - (1 if class_token else 0)
    side = round(tokens ** 0.5)
    if side * side != tokens:
        raise CheckpointError(f"timm state dict: pos_embed has {tokens} patch positions, not a square grid")
    if "fc_norm.weight" in sd:
        pool = "avg"
    elif "norm.weight" in sd and class_token:
        pool = "token"
    else:
        raise CheckpointError("timm state dict: neither 'fc_norm.weight' (average pooling) nor 'norm.weight' with "
                              "'cls_token' (class-token pooling) is present")
    stage = StageConfig(width, depth, hidden // width, num_heads, depth)
    return ViTConfig((stage,), inner // num_heads, cin, sd["head.weight"].shape[0], side * p, layout="plain",
                     patch_size=p, class_token=class_token, pool=pool, layer_scale="blocks.0.ls1.gamma" in sd)


def convert(source: Any, *, num_heads: int) -> tuple[ViTConfig, Any]:
    """``(config, SuperPlainViT with the weights)`` from a timm ViT state dict or file."""
    from .plain import SuperPlainViT

    sd = read_state_dict(source)
    config = config_from_state_dict(sd, num_heads)
    net = SuperPlainViT(config)
    net.load_state_dict(check_state_dict(net, sd, "timm state dict"))
    return config, net.eval()
