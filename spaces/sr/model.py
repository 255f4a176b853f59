"""The networks of ``sr-adaptive``: an EDSR/ESPCN-style super-resolution net.

A 3x3 head conv to the trunk width, adaptive residual blocks (3x3 conv to the block's own
width, ReLU, 3x3 conv back to the trunk), a 3x3 tail conv to ``3 * scale**2`` channels and a
pixel shuffle, added to the bicubic upsampling of the input (the net learns the residual
detail bicubic misses). A block of width 0 is skipped: the depth gate of the compiler-aware
SR NAS. The parent holds an x2 and an x4 tail on one shared body, so both scales search
subnets of the same trained weights.

``SRNet`` is dense when built from a subnet's config (only the kept blocks exist, under the
parent's names), and runs as any subnet of itself with ``run(x, sub, scale)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._slicing import conv

__all__ = ["SRConfig", "SRNet", "param_count", "macs", "SCALES"]

SCALES = (2, 4)


@dataclass(frozen=True)
class SRConfig:
    """A network: trunk width, each block's width (0: skipped), the upsampling factors it has."""

    width: int
    blocks: tuple[int, ...]
    scales: tuple[int, ...] = SCALES
    channels: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "blocks": list(self.blocks), "scales": list(self.scales)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SRConfig:
        d = dict(d)
        d["blocks"] = tuple(int(b) for b in d["blocks"])
        d["scales"] = tuple(int(s) for s in d["scales"])
        if set(d["scales"]) - set(SCALES) or not d["scales"]:
            raise ValueError(f"scales {d['scales']}: valid are {SCALES}")
        if not isinstance(d["width"], int) or d["width"] < 1 or any(b < 0 for b in d["blocks"]):
            raise ValueError(f"width {d['width']!r} must be >= 1 and block widths >= 0 (0: skipped)")
        return cls(**d)


class _Block(nn.Module):
    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, inner, 3, padding=1)
        self.conv2 = nn.Conv2d(inner, width, 3, padding=1)


class SRNet(nn.Module):
    """Dense for its own config; ``run(x, sub, scale)`` evaluates a subnet of it."""

    def __init__(self, config: SRConfig) -> None:
        super().__init__()
        self.config = config
        c, w = config.channels, config.width
        self.head = nn.Conv2d(c, w, 3, padding=1)
        self.blocks = nn.ModuleDict({f"b{i}": _Block(w, inner) for i, inner in enumerate(config.blocks, 1) if inner})
        self.tails = nn.ModuleDict({f"x{s}": nn.Conv2d(w, c * s * s, 3, padding=1) for s in config.scales})
        for tail in self.tails.values():  # an untrained network is exactly bicubic upsampling
            nn.init.zeros_(tail.weight)
            nn.init.zeros_(tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, None, self.config.scales[0])

    def run(self, x: torch.Tensor, sub: SRConfig | None, scale: int) -> torch.Tensor:
        sub = sub or self.config
        h = conv(x, self.head, sub.width)
        for i, inner in enumerate(sub.blocks, 1):
            if inner:
                b = self.blocks[f"b{i}"]
                h = h + conv(F.relu(conv(h, b.conv1, inner)), b.conv2, sub.width)
        up = F.pixel_shuffle(conv(h, self.tails[f"x{scale}"]), scale)
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) + up


def param_count(config: SRConfig) -> int:
    c, w = config.channels, config.width
    n = 9 * c * w + w
    n += sum(9 * w * i + i + 9 * i * w + w for i in config.blocks if i)
    return n + sum(9 * w * c * s * s + c * s * s for s in config.scales)


def macs(config: SRConfig, side: int) -> int:
    """Multiply-accumulates for one ``side x side`` low-resolution input at the first scale."""
    c, w, s = config.channels, config.width, config.scales[0]
    per_px = 9 * c * w + sum(18 * w * i for i in config.blocks if i) + 9 * w * c * s * s
    return per_px * side * side
