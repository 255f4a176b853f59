"""The plain ViT of ``vit-elastic`` parents imported from timm: ``PlainViT`` and its
weight-sharing form ``SuperPlainViT``.

The module tree and parameter names are timm's ``VisionTransformer`` (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,
mlp.fc2,ls2.gamma}``, ``norm`` or ``fc_norm``, ``head``), so a timm state dict loads after
its shapes are checked (``spaces.vit.timm``) and an exported subnet's weights load back into
timm. The network is one stage of ``ViTConfig``: ``width`` is the embedding width, every
block holds attention, the head dimension is the parent's.

Elasticity is AutoFormer's: a subnet keeps the first ``width`` embedding channels (its
LayerNorms normalise over those), the first ``heads`` heads, the first ``mlp_ratio * width``
hidden channels and the first ``depth`` blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .model import ViTConfig

__all__ = ["PlainViT", "SuperPlainViT"]


class _PatchEmbed(nn.Module):
    def __init__(self, cin: int, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, width, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(width, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(_attend(self.qkv(x), self.heads, self.head_dim))


def _attend(qkv: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    b, t, _ = qkv.shape
    q, k, v = qkv.reshape(b, t, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    a = torch.softmax((q * head_dim ** -0.5) @ k.transpose(-2, -1), dim=-1)
    return (a @ v).transpose(1, 2).reshape(b, t, heads * head_dim)


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class _LayerScale(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), 1e-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _Block(nn.Module):
    def __init__(self, width: int, hidden: int, heads: int, head_dim: int, layer_scale: bool, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = _Attention(width, heads, head_dim)
        self.ls1 = _LayerScale(width) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = _Mlp(width, hidden)
        self.ls2 = _LayerScale(width) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PlainViT(nn.Module):
    """timm's ``VisionTransformer`` (no register tokens, no dropout), fully described by a
    one-stage :class:`ViTConfig` with ``layout="plain"``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        _check(config)
        self.config = config
        s = config.stages[0]
        d, p = s.width, config.patch_size
        self.prefix = 1 if config.class_token else 0
        self.patch_embed = _PatchEmbed(config.in_channels, d, p)
        if config.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        tokens = (config.image_size // p) ** 2 + self.prefix
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.blocks = nn.Sequential(*[_Block(d, s.mlp_ratio * d, s.heads, config.head_dim, config.layer_scale,
                                             config.norm_eps) for _ in range(s.depth)])
        if config.fc_norm:
            self.fc_norm = nn.LayerNorm(d, eps=config.norm_eps)
        else:
            self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.head = nn.Linear(d, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.prefix:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(x + self.pos_embed)
        if not self.config.fc_norm:
            x = self.norm(x)
        x = x[:, 0] if self.config.pool == "token" else x[:, self.prefix:].mean(dim=1)
        return self.head(self.fc_norm(x) if self.config.fc_norm else x)


class SuperPlainViT(PlainViT):
    """The imported network run as any of its subnets: ``forward(x, sub)`` slices weights;
    ``extract(sub)`` copies the slices into a dense ``PlainViT`` with the same output."""

    def forward(self, x: torch.Tensor, sub: ViTConfig | None = None) -> torch.Tensor:  # type: ignore[override]
        if sub is None:
            return super().forward(x)
        s, hd = sub.stages[0], self.config.head_dim
        w, inner, hidden = s.width, s.heads * self.config.head_dim, s.mlp_ratio * s.width
        full_inner = self.config.stages[0].heads * hd
        pe = self.patch_embed.proj
        x = F.conv2d(x, pe.weight[:w], pe.bias[:w], stride=pe.stride).flatten(2).transpose(1, 2)
        if self.prefix:
            x = torch.cat([self.cls_token[..., :w].expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.pos_embed[..., :w]
        for blk in self.blocks[:s.depth]:
            a = blk.attn
            wq = a.qkv.weight.view(3, full_inner, -1)[:, :inner, :w].reshape(3 * inner, w)
            bq = a.qkv.bias.view(3, full_inner)[:, :inner].reshape(-1)
            y = _attend(F.linear(_ln(x, blk.norm1, w), wq, bq), s.heads, hd)
            x = x + _scale(F.linear(y, a.proj.weight[:w, :inner], a.proj.bias[:w]), blk.ls1, w)
            m = blk.mlp
            y = F.gelu(F.linear(_ln(x, blk.norm2, w), m.fc1.weight[:hidden, :w], m.fc1.bias[:hidden]))
            x = x + _scale(F.linear(y, m.fc2.weight[:w, :hidden], m.fc2.bias[:w]), blk.ls2, w)
        if not self.config.fc_norm:
            x = _ln(x, self.norm, w)
        x = x[:, 0] if self.config.pool == "token" else x[:, self.prefix:].mean(dim=1)
        if self.config.fc_norm:
            x = _ln(x, self.fc_norm, w)
        return F.linear(x, self.head.weight[:, :w], self.head.bias)

    @torch.no_grad()
    def extract(self, sub: ViTConfig) -> PlainViT:
        """The dense subnet ``sub`` with its weights sliced from this network."""
        net = PlainViT(sub)
        hd, full_inner = self.config.head_dim, self.config.stages[0].heads * self.config.head_dim
        s = sub.stages[0]
        inner = s.heads * hd
        src = self.state_dict()
        out = {}
        for key, t in net.state_dict().items():
            p = src[key]
            if key.endswith("attn.qkv.weight"):
                out[key] = p.view(3, full_inner, -1)[:, :inner, :s.width].reshape(t.shape)
            elif key.endswith("attn.qkv.bias"):
                out[key] = p.view(3, full_inner)[:, :inner].reshape(t.shape)
            else:  # every other tensor is a prefix slice of the parent's
                out[key] = p[tuple(slice(0, n) for n in t.shape)]
        net.load_state_dict(out)
        return net


def _check(config: ViTConfig) -> None:
    # outside the class: TorchScript compiles what a module's methods contain, f-strings included
    if config.layout != "plain" or len(config.stages) != 1:
        raise ValueError(f"PlainViT takes a one-stage config with layout 'plain', got {config}")


def _ln(x: torch.Tensor, ln: nn.LayerNorm, w: int) -> torch.Tensor:
    return F.layer_norm(x, (w,), ln.weight[:w], ln.bias[:w], ln.eps)


def _scale(x: torch.Tensor, ls: nn.Module, w: int) -> torch.Tensor:
    return x * ls.gamma[:w] if isinstance(ls, _LayerScale) else x


def plain_param_count(config: ViTConfig) -> int:
    s = config.stages[0]
    d, inner, hidden, p = s.width, s.heads * config.head_dim, s.mlp_ratio * s.width, config.patch_size
    tokens = (config.image_size // p) ** 2 + (1 if config.class_token else 0)
    n = config.in_channels * p * p * d + d + tokens * d + (d if config.class_token else 0)
    block = 4 * d + d * 3 * inner + 3 * inner + inner * d + d + 2 * d * hidden + hidden + d
    block += 2 * d if config.layer_scale else 0
    return n + s.depth * block + 2 * d + d * config.num_classes + config.num_classes


def plain_macs(config: ViTConfig) -> int:
    s = config.stages[0]
    d, inner, hidden, p = s.width, s.heads * config.head_dim, s.mlp_ratio * s.width, config.patch_size
    patches = (config.image_size // p) ** 2
    t = patches + (1 if config.class_token else 0)
    per_block = t * (3 * d * inner + inner * d + 2 * d * hidden) + 2 * t * t * inner
    return config.in_channels * p * p * d * patches + s.depth * per_block + d * config.num_classes
