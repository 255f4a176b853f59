"""The networks of ``vit-elastic``: a dense ``ViT`` built from a :class:`ViTConfig`, and the
weight-sharing parent ``SuperViT`` whose subnets are ``ViT`` with sliced weights.

The layout follows EfficientFormerV2 scaled to 8x8 digits: a conv stem, stages of 4D FFN
blocks (1x1 expand, 3x3 depthwise, 1x1 project, each with BatchNorm; layer scale on the
residual), a stride-2 conv between stages, and multi-head self-attention blocks allowed
only as the last blocks of the late stages. Elasticity is prefix slicing (Once-for-All):
a subnet keeps the first ``width`` channels, the first ``depth`` blocks, the first
``heads`` heads and the first ``ratio * width`` hidden channels of each FFN. Sandwich
training makes the leading channels the important ones, so slicing needs no reordering.

``ViT`` uses only plain ``torch.nn`` layers and tensor ops, so it scripts, traces and
exports to ONNX, and reloads from its config and state dict alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StageConfig", "ViTConfig", "ViT", "SuperViT", "network_class", "build_parent", "param_count", "macs"]


@dataclass(frozen=True)
class StageConfig:
    width: int
    depth: int
    mlp_ratio: int
    heads: int = 0  # attention heads of this stage's attention blocks (0: no attention possible)
    attn: int = 0  # the last ``attn`` blocks are attention + FFN blocks


@dataclass(frozen=True)
class ViTConfig:
    """The full description of a dense network: what export writes beside the weights."""

    stages: tuple[StageConfig, ...]
    head_dim: int = 8
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 8
    # "efv2": the network above; "plain": timm's VisionTransformer (``spaces.vit.plain``), one
    # stage whose every block holds attention, for parents imported from timm state dicts
    layout: str = "efv2"
    patch_size: int = 1  # plain only, like the three below
    class_token: bool = False
    pool: str = "avg"  # "token" (the class token) or "avg" (the mean of the patch tokens)
    fc_norm: bool = False  # the final LayerNorm after pooling (timm's fc_norm) instead of before (norm)
    layer_scale: bool = False
    norm_eps: float = 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stages": [asdict(s) for s in self.stages]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViTConfig:
        d = dict(d)
        d["stages"] = tuple(StageConfig(**s) for s in d["stages"])
        return cls(**d)


# -- the dense network --------------------------------------------------------------------
class _FFN(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(width, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.scale = nn.Parameter(torch.full((width, 1, 1), 1e-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.bn1(self.expand(x)))
        h = F.gelu(self.bn2(self.dw(h)))
        return x + self.scale * self.bn3(self.project(h))


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.norm = nn.BatchNorm2d(width)
        self.qkv = nn.Conv2d(width, 3 * inner, 1)
        self.out = nn.Conv2d(inner, width, 1)
        self.scale = nn.Parameter(torch.full((width, 1, 1), 1e-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, self.head_dim, h * w).unbind(1)
        a = torch.softmax(q.transpose(-2, -1) @ k * (self.head_dim ** -0.5), dim=-1)  # (b, heads, hw, hw)
        y = (v @ a.transpose(-2, -1)).reshape(b, self.heads * self.head_dim, h, w)
        return x + self.scale * self.out(y)


class _Block(nn.Module):
    def __init__(self, width: int, hidden: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.attn = _Attention(width, heads, head_dim) if heads else nn.Identity()
        self.ffn = _FFN(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.attn(x))


def _check_layout(config: ViTConfig, layout: str) -> None:
    # outside the class: TorchScript compiles what a module's methods contain, f-strings included
    if config.layout != layout:
        raise ValueError(f"this network takes layout {layout!r}; {config.layout!r} is built by network_class()")


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class ViT(nn.Module):
    """A dense EfficientFormerV2-style network, fully described by its :class:`ViTConfig`."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        _check_layout(config, "efv2")
        self.config = config
        s0 = config.stages[0]
        self.stem = _conv_bn(config.in_channels, s0.width, 1)
        self.downs = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev = s0.width
        for i, s in enumerate(config.stages):
            self.downs.append(nn.Identity() if i == 0 else _conv_bn(prev, s.width, 2))
            self.stages.append(nn.Sequential(*[
                _Block(s.width, s.mlp_ratio * s.width, s.heads if j >= s.depth - s.attn else 0, config.head_dim)
                for j in range(s.depth)]))
            prev = s.width
        self.norm = nn.BatchNorm2d(prev)
        self.head = nn.Linear(prev, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for down, stage in zip(self.downs, self.stages):
            x = stage(down(x))
        return self.head(self.norm(x).mean(dim=(2, 3)))


# -- the weight-sharing parent ------------------------------------------------------------
def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, n: int, momentum: float) -> torch.Tensor:
    # eval: a slice of the running statistics; training: batch statistics, and the running
    # ones move by ``momentum`` (0 while training subnets: their statistics come from
    # recalibration, never from a mix of every subnet's batches)
    return F.batch_norm(x, bn.running_mean[:n], bn.running_var[:n], bn.weight[:n], bn.bias[:n],
                        bn.training, momentum, bn.eps)


class SuperViT(ViT):
    """The largest network, run as any of its subnets: ``forward(x, sub)`` slices weights.

    ``extract(sub)`` builds the dense ``ViT`` of a subnet with copied slices, whose output
    equals ``forward(x, sub)`` in eval mode. In training mode the sliced BatchNorms use
    batch statistics and leave the running statistics alone (they are the largest
    network's; subnets get theirs by recalibration).
    """

    def __init__(self, config: ViTConfig) -> None:
        # every block of a stage that may hold attention owns an attention module
        full = ViTConfig(tuple(StageConfig(s.width, s.depth, s.mlp_ratio, s.heads, s.depth if s.heads else 0)
                               for s in config.stages), config.head_dim, config.in_channels,
                         config.num_classes, config.image_size)
        super().__init__(full)
        self.max_attn = tuple(s.attn for s in config.stages)
        self.bn_momentum = 0.0  # see _bn; calibration sets 1/k for a cumulative average

    def largest(self) -> ViTConfig:
        c = self.config
        return ViTConfig(tuple(StageConfig(s.width, s.depth, s.mlp_ratio, s.heads, m)
                               for s, m in zip(c.stages, self.max_attn)),
                         c.head_dim, c.in_channels, c.num_classes, c.image_size)

    def forward(self, x: torch.Tensor, sub: ViTConfig | None = None) -> torch.Tensor:  # type: ignore[override]
        if sub is None:
            sub = self.largest()
        hd = self.config.head_dim
        w0 = sub.stages[0].width
        x = self._conv_bn(x, self.stem, x.shape[1], w0, 1)
        prev = w0
        for i, (s, down, stage) in enumerate(zip(sub.stages, self.downs, self.stages)):
            if i:
                x = self._conv_bn(x, down, prev, s.width, 2)
            c, hidden = s.width, s.mlp_ratio * s.width
            for j in range(s.depth):
                block = stage[j]
                if j >= s.depth - s.attn:
                    at = block.attn
                    inner = s.heads * hd
                    full_inner = at.heads * hd
                    wq = at.qkv.weight.view(3, full_inner, -1, 1, 1)[:, :inner, :c].reshape(3 * inner, c, 1, 1)
                    bq = at.qkv.bias.view(3, full_inner)[:, :inner].reshape(-1)
                    b, _, h, w = x.shape
                    qkv = F.conv2d(_bn(x, at.norm, c, self.bn_momentum), wq, bq)
                    q, k, v = qkv.reshape(b, 3, s.heads, hd, h * w).unbind(1)
                    a = torch.softmax(q.transpose(-2, -1) @ k * (hd ** -0.5), dim=-1)
                    y = (v @ a.transpose(-2, -1)).reshape(b, inner, h, w)
                    x = x + at.scale[:c] * F.conv2d(y, at.out.weight[:c, :inner], at.out.bias[:c])
                f = block.ffn
                m = self.bn_momentum
                t = F.gelu(_bn(F.conv2d(x, f.expand.weight[:hidden, :c]), f.bn1, hidden, m))
                t = F.gelu(_bn(F.conv2d(t, f.dw.weight[:hidden], padding=1, groups=hidden), f.bn2, hidden, m))
                x = x + f.scale[:c] * _bn(F.conv2d(t, f.project.weight[:c, :hidden]), f.bn3, c, m)
            prev = c
        x = _bn(x, self.norm, prev, self.bn_momentum).mean(dim=(2, 3))
        return F.linear(x, self.head.weight[:, :prev], self.head.bias)

    def _conv_bn(self, x: torch.Tensor, seq: nn.Sequential, cin: int, cout: int, stride: int) -> torch.Tensor:
        conv, bn = seq[0], seq[1]
        y = F.conv2d(x, conv.weight[:cout, :cin], stride=stride, padding=1)
        return F.gelu(_bn(y, bn, cout, self.bn_momentum))

    @torch.no_grad()
    def extract(self, sub: ViTConfig) -> ViT:
        """The dense subnet ``sub`` with its weights sliced from this parent."""
        net = ViT(sub)
        hd = self.config.head_dim
        _copy_conv_bn(net.stem, self.stem)
        for i, s in enumerate(sub.stages):
            if i:
                _copy_conv_bn(net.downs[i], self.downs[i])
            for j in range(s.depth):
                dst, src = net.stages[i][j], self.stages[i][j]
                _copy_ffn(dst.ffn, src.ffn)
                if isinstance(dst.attn, _Attention):
                    a, b = dst.attn, src.attn
                    inner, c = s.heads * hd, s.width
                    _copy_bn(a.norm, b.norm)
                    a.qkv.weight.copy_(b.qkv.weight.view(3, b.heads * hd, -1, 1, 1)[:, :inner, :c]
                                       .reshape(3 * inner, c, 1, 1))
                    a.qkv.bias.copy_(b.qkv.bias.view(3, -1)[:, :inner].reshape(-1))
                    a.out.weight.copy_(b.out.weight[:c, :inner])
                    a.out.bias.copy_(b.out.bias[:c])
                    a.scale.copy_(b.scale[:c])
        _copy_bn(net.norm, self.norm)
        net.head.weight.copy_(self.head.weight[:, :net.head.in_features])
        net.head.bias.copy_(self.head.bias)
        return net


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d) -> None:
    n = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:n])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _copy_conv_bn(dst: nn.Sequential, src: nn.Sequential) -> None:
    o, i = dst[0].weight.shape[:2]
    dst[0].weight.copy_(src[0].weight[:o, :i])
    _copy_bn(dst[1], src[1])


def _copy_ffn(dst: _FFN, src: _FFN) -> None:
    hidden, c = dst.expand.weight.shape[:2]
    dst.expand.weight.copy_(src.expand.weight[:hidden, :c])
    dst.dw.weight.copy_(src.dw.weight[:hidden])
    dst.project.weight.copy_(src.project.weight[:c, :hidden])
    dst.scale.copy_(src.scale[:c])
    for name in ("bn1", "bn2", "bn3"):
        _copy_bn(getattr(dst, name), getattr(src, name))


def network_class(config: ViTConfig, *, parent: bool = False) -> type:
    """The class of the dense network (or, with ``parent``, the weight-sharing one) of ``config``."""
    if config.layout == "plain":
        from .plain import PlainViT, SuperPlainViT

        return SuperPlainViT if parent else PlainViT
    return SuperViT if parent else ViT


def build_parent(config: ViTConfig) -> nn.Module:
    return network_class(config, parent=True)(config)


def param_count(config: ViTConfig) -> int:
    """Parameters of the dense network, computed from the config (no module built)."""
    if config.layout == "plain":
        from .plain import plain_param_count

        return plain_param_count(config)
    n = 9 * config.in_channels * config.stages[0].width + 2 * config.stages[0].width
    prev = config.stages[0].width
    for i, s in enumerate(config.stages):
        c, hidden = s.width, s.mlp_ratio * s.width
        if i:
            n += 9 * prev * c + 2 * c
        ffn = c * hidden + 9 * hidden + hidden * c + 2 * hidden * 2 + 2 * c + c
        inner = s.heads * config.head_dim
        attn = 2 * c + c * 3 * inner + 3 * inner + inner * c + c + c
        n += s.depth * ffn + s.attn * attn
        prev = c
    return n + 2 * prev + prev * config.num_classes + config.num_classes


def macs(config: ViTConfig) -> int:
    """Multiply-accumulates of one image's forward pass (convs, linears and attention)."""
    if config.layout == "plain":
        from .plain import plain_macs

        return plain_macs(config)
    side = config.image_size
    hw = side * side
    total = 9 * config.in_channels * config.stages[0].width * hw
    prev = config.stages[0].width
    for i, s in enumerate(config.stages):
        if i:
            side = math.ceil(side / 2)
            hw = side * side
            total += 9 * prev * s.width * hw
        c, hidden = s.width, s.mlp_ratio * s.width
        total += s.depth * hw * (2 * c * hidden + 9 * hidden)
        inner = s.heads * config.head_dim
        total += s.attn * (hw * (3 * c * inner + inner * c) + 2 * hw * hw * inner)
        prev = c
    return total + prev * config.num_classes
