"""Importing timm ``VisionTransformer`` state dicts as ``vit-elastic`` parents.

``convert(source, num_heads=..., global_pool=...)`` reads the state dict (a mapping of
tensors, a ``.safetensors`` / ``.pt`` / ``.pth`` file, or the timm model itself), infers the
network from the tensors' names and shapes (width, depth, patch size, image size, MLP ratio,
class token, final norm before or after pooling, layer scale), checks every tensor against
the network it describes, and returns the config and the loaded
:class:`~spaces.vit.plain.SuperPlainViT`.

A bare state dict does not record the number of heads (``qkv`` has ``3 * width`` rows
whatever the split), the pooling (``token`` or ``avg``: inferred as ``avg`` when there is an
``fc_norm``, else ``token`` with a class token), the activation or the LayerNorm epsilon
(timm's defaults, exact GELU and 1e-6, are assumed): ``num_heads`` is asked for and
``global_pool`` may be given. Given the timm model instead, all four are read from it and
anything else is refused.

Used through ``spaces.import_parent("vit-elastic", NAME, source, format="timm", num_heads=H)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._checkpoints import check_state_dict, read_state_dict
from .._errors import CheckpointError
from .model import StageConfig, ViTConfig

if TYPE_CHECKING:
    from .plain import SuperPlainViT

__all__ = ["convert", "config_from_state_dict"]

# timm keys this importer has no layer for: a model with them is refused by name
_UNSUPPORTED = {"reg_token": "register tokens", "norm_pre.weight": "a pre-norm (norm_pre)",
                "blocks.0.attn.q_norm.weight": "query/key normalisation (qk_norm)",
                "head_dist.weight": "a distillation head (DeiT-distilled)", "attn_pool.latent": "attention pooling"}


def config_from_state_dict(sd: Mapping[str, Any], num_heads: int, global_pool: str | None = None,
                           norm_eps: float = 1e-6) -> ViTConfig:
    """The one-stage ``layout="plain"`` config a timm ViT state dict describes."""
    for key, what in _UNSUPPORTED.items():
        if key in sd:
            raise CheckpointError(f"timm state dict: {key!r} means {what}, which vit-elastic does not import")
    if "head.weight" not in sd and "blocks.0.attn.qkv.weight" in sd:
        raise CheckpointError("timm state dict: 'head.weight' is missing: a model without a classifier head "
                              "(num_classes=0, e.g. DINO or MAE backbones) is not imported")
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
    positions = sd["pos_embed"].shape[1]
    tokens = positions - (1 if class_token else 0)
    side = round(tokens ** 0.5)
    if side * side != tokens:
        if class_token and round(positions ** 0.5) ** 2 == positions:
            raise CheckpointError(f"timm state dict: pos_embed has {positions} positions, a square grid without the "
                                  "class token's: models with no_embed_class=True (DeiT-3, FlexiViT) are not imported")
        raise CheckpointError(f"timm state dict: pos_embed has {tokens} patch positions, not a square grid")
    fc_norm = "fc_norm.weight" in sd
    if fc_norm == ("norm.weight" in sd):
        raise CheckpointError("timm state dict: exactly one of 'norm.weight' (the final norm before pooling) and "
                              "'fc_norm.weight' (after pooling) is expected")
    pool = global_pool or ("avg" if fc_norm or not class_token else "token")
    if pool not in ("token", "avg"):
        raise CheckpointError(f"global_pool: got {pool!r}; valid: token, avg (max and avgmax pooling are not imported)")
    if pool == "token" and not class_token:
        raise CheckpointError("global_pool: 'token' needs a class token, and this state dict has no 'cls_token'")
    stage = StageConfig(width, depth, hidden // width, num_heads, depth)
    return ViTConfig((stage,), inner // num_heads, cin, sd["head.weight"].shape[0], side * p, layout="plain",
                     patch_size=p, class_token=class_token, pool=pool, fc_norm=fc_norm,
                     layer_scale="blocks.0.ls1.gamma" in sd, norm_eps=norm_eps)


def _from_module(net: Any) -> dict[str, Any]:
    """``num_heads``, ``global_pool`` and ``norm_eps`` of a timm ``VisionTransformer``,
    refusing an activation or norm the plain ViT does not have."""
    import torch

    try:
        blk = net.blocks[0]
        heads, pool, eps = int(blk.attn.num_heads), net.global_pool, float(blk.norm1.eps)
    except (AttributeError, IndexError, TypeError) as e:
        raise CheckpointError(f"timm model: not a VisionTransformer ({type(net).__name__}: {e})") from None
    act = getattr(blk.mlp, "act", None)
    if not (isinstance(act, torch.nn.GELU) and act.approximate == "none"):
        raise CheckpointError(f"timm model: the MLP activation is {act!r}; vit-elastic imports exact GELU only")
    if not isinstance(blk.norm1, torch.nn.LayerNorm):
        raise CheckpointError(f"timm model: the norm is {type(blk.norm1).__name__}; vit-elastic imports LayerNorm only")
    return {"num_heads": heads, "global_pool": pool, "norm_eps": eps}


def convert(source: Any, *, num_heads: int | None = None, global_pool: str | None = None) -> tuple[ViTConfig, SuperPlainViT]:
    """``(config, SuperPlainViT with the weights)`` from a timm ViT, its state dict or file."""
    import torch

    from .plain import SuperPlainViT

    opts: dict[str, Any] = {"num_heads": num_heads, "global_pool": global_pool, "norm_eps": 1e-6}
    if isinstance(source, torch.nn.Module):
        read = _from_module(source)
        for key in ("num_heads", "global_pool"):
            if opts[key] is not None and opts[key] != read[key]:
                raise CheckpointError(f"{key}: got {opts[key]!r}; the timm model has {read[key]!r}")
        opts = read
    elif num_heads is None:
        raise CheckpointError("num_heads: missing; a state dict does not record it (qkv is 3 x width rows whatever "
                              "the split): give the model's, e.g. num_heads=3 for vit_tiny, 6 for vit_small")
    sd = read_state_dict(source)
    config = config_from_state_dict(sd, opts["num_heads"], opts["global_pool"], opts["norm_eps"])
    net = SuperPlainViT(config)
    net.load_state_dict(check_state_dict(net, sd, "timm state dict"))
    return config, net.eval()
