"""The networks of ``unet-blocks``: a DDPM U-Net whose ResNet and attention blocks can be
removed one by one (SnapFusion, LAPTOP-Diff, BK-SDM) and whose stages can be narrowed.

Layout: a 3x3 input conv; per resolution stage of the down path ``layers`` pairs of a
ResNet block (time-conditioned) and, in the attention stages, a self-attention block; a
stride-2 conv between stages; a middle ResNet, attention, ResNet; the up path mirrors the
down path, each stage first merging the skip of its resolution. Every channel change
happens outside the removable blocks (the stride-2, merge and upsampling convs), so any
block can become the identity and any stage can be narrowed by prefix slicing. The skip
merge is two 1x1 convs summed (equal to one 1x1 conv on the concatenation) so that its
weights slice by prefix too.

``UNet`` is dense when built from a subnet's config (only the kept blocks exist, under the
parent's names), and runs as any subnet of itself with ``run(x, t, sub)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._slicing import GROUP_CHANNELS, conv, group_norm, linear

__all__ = ["UNetConfig", "UNet", "units", "param_count", "macs", "TIMESTEPS"]

TIMESTEPS = 1000  # DDPM's linear schedule: beta from 1e-4 to 0.02 over 1000 steps


@dataclass(frozen=True)
class UNetConfig:
    """A network: channels per stage, ResNet blocks per stage, the stages with attention, and
    the removed blocks (unit names, see :func:`units`)."""

    widths: tuple[int, ...]
    layers: int
    attn_stages: tuple[int, ...]  # 1-based
    removed: tuple[str, ...] = ()
    image_size: int = 16
    channels: int = 1
    temb: int = 128

    def keeps(self, unit: str) -> bool:
        return unit not in self.removed

    def with_(self, **changes: Any) -> UNetConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "widths": list(self.widths), "attn_stages": list(self.attn_stages),
                "removed": list(self.removed)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        d = dict(d)
        for k in ("widths", "attn_stages", "removed"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        for w in cfg.widths:
            if not isinstance(w, int) or w < GROUP_CHANNELS or w % GROUP_CHANNELS:
                raise ValueError(f"widths: {w!r} is not a positive multiple of {GROUP_CHANNELS}")
        if not isinstance(cfg.layers, int) or cfg.layers < 1:
            raise ValueError(f"layers: {cfg.layers!r}; valid: an integer >= 1")
        if not set(cfg.attn_stages) <= set(range(1, len(cfg.widths) + 1)):
            raise ValueError(f"attn_stages: {list(cfg.attn_stages)}; valid: stages 1..{len(cfg.widths)}")
        bad = sorted(set(cfg.removed) - set(units(cfg)))
        if bad:
            raise ValueError(f"removed unit {bad[0]!r} is not a block of this network")
        return cfg


def units(cfg: UNetConfig) -> list[str]:
    """Every removable block, in forward order: ``d{stage}.r{j}`` / ``d{stage}.a{j}`` (down),
    ``mid.r0``, ``mid.a``, ``mid.r1``, ``u{stage}.r{j}`` / ``u{stage}.a{j}`` (up)."""
    out = []
    n = len(cfg.widths)
    for s in range(1, n + 1):
        for j in range(cfg.layers):
            out += [f"d{s}.r{j}"] + ([f"d{s}.a{j}"] if s in cfg.attn_stages else [])
    out += ["mid.r0", "mid.a", "mid.r1"]
    for s in range(n, 0, -1):
        for j in range(cfg.layers):
            out += [f"u{s}.r{j}"] + ([f"u{s}.a{j}"] if s in cfg.attn_stages else [])
    return out


def _key(unit: str) -> str:
    return unit.replace(".", "_")  # module names cannot hold dots


def _stage(unit: str, n: int) -> int:
    return n if unit.startswith("mid") else int(unit[1:unit.index(".")])


class _ResBlock(nn.Module):
    def __init__(self, width: int, temb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(width // GROUP_CHANNELS, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.time = nn.Linear(temb, width)
        self.norm2 = nn.GroupNorm(width // GROUP_CHANNELS, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # starts as the identity: removing it is a small change
        nn.init.zeros_(self.conv2.bias)

    def run(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        h = conv(F.silu(group_norm(x, self.norm1)), self.conv1, c) + linear(emb, self.time, c)[:, :, None, None]
        return x + conv(F.silu(group_norm(h, self.norm2)), self.conv2, c)


class _Attention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(width // GROUP_CHANNELS, width)
        self.q = nn.Conv2d(width, width, 1)
        self.k = nn.Conv2d(width, width, 1)
        self.v = nn.Conv2d(width, width, 1)
        self.proj = nn.Conv2d(width, width, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = group_norm(x, self.norm)
        q, k, v = (conv(h, m, c).reshape(b, c, hh * ww) for m in (self.q, self.k, self.v))
        a = torch.softmax(q.transpose(1, 2) @ k * (c ** -0.5), dim=-1)  # (b, hw, hw)
        y = (v @ a.transpose(1, 2)).reshape(b, c, hh, ww)
        return x + conv(y, self.proj, c)


def timestep_embedding(t: torch.Tensor, dim: int = 32) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class UNet(nn.Module):
    """``forward(x, t)`` predicts the noise in ``x`` at timesteps ``t`` (a float tensor)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg, n, ws = config, len(config.widths), config.widths
        self.temb = nn.Sequential(nn.Linear(32, cfg.temb), nn.SiLU(), nn.Linear(cfg.temb, cfg.temb))
        self.conv_in = nn.Conv2d(cfg.channels, ws[0], 3, padding=1)
        self.downs = nn.ModuleDict({f"d{s}": nn.Conv2d(ws[s - 2], ws[s - 1], 3, stride=2, padding=1)
                                    for s in range(2, n + 1)})
        self.merge_h = nn.ModuleDict({f"u{s}": nn.Conv2d(ws[s - 1], ws[s - 1], 1) for s in range(1, n + 1)})
        self.merge_skip = nn.ModuleDict({f"u{s}": nn.Conv2d(ws[s - 1], ws[s - 1], 1, bias=False)
                                         for s in range(1, n + 1)})
        self.ups = nn.ModuleDict({f"u{s}": nn.Conv2d(ws[s - 1], ws[s - 2], 3, padding=1) for s in range(2, n + 1)})
        self.blocks = nn.ModuleDict()
        for u in units(cfg):
            if cfg.keeps(u):
                w = ws[_stage(u, n) - 1]
                self.blocks[_key(u)] = _Attention(w) if ".a" in u else _ResBlock(w, cfg.temb)
        self.norm_out = nn.GroupNorm(ws[0] // GROUP_CHANNELS, ws[0])
        self.conv_out = nn.Conv2d(ws[0], cfg.channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.run(x, t, None)

    def run(self, x: torch.Tensor, t: torch.Tensor, sub: UNetConfig | None) -> torch.Tensor:
        sub = sub or self.config
        n, ws = len(sub.widths), sub.widths
        emb = F.silu(self.temb(timestep_embedding(t)))

        def stage_blocks(h: torch.Tensor, prefix: str, s: int) -> torch.Tensor:
            for j in range(sub.layers):
                for kind in ("r", "a"):
                    u = f"{prefix}{s}.{kind}{j}"
                    if (kind == "a" and s not in sub.attn_stages) or not sub.keeps(u):
                        continue
                    blk = self.blocks[_key(u)]
                    h = blk.run(h, emb) if kind == "r" else blk.run(h)
            return h

        h = conv(x, self.conv_in, ws[0])
        skips = []
        for s in range(1, n + 1):
            if s > 1:
                h = conv(h, self.downs[f"d{s}"], ws[s - 1])
            h = stage_blocks(h, "d", s)
            skips.append(h)
        for u in ("mid.r0", "mid.a", "mid.r1"):
            if sub.keeps(u):
                blk = self.blocks[_key(u)]
                h = blk.run(h) if u == "mid.a" else blk.run(h, emb)
        for s in range(n, 0, -1):
            w = ws[s - 1]
            h = conv(h, self.merge_h[f"u{s}"], w) + conv(skips[s - 1], self.merge_skip[f"u{s}"], w)
            h = stage_blocks(h, "u", s)
            if s > 1:
                h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"), self.ups[f"u{s}"], ws[s - 2])
        return conv(F.silu(group_norm(h, self.norm_out)), self.conv_out)


def param_count(cfg: UNetConfig) -> int:
    """Parameters of the dense network, computed from the config (no module built)."""
    n, ws, e = len(cfg.widths), cfg.widths, cfg.temb
    total = 32 * e + e + e * e + e + 9 * cfg.channels * ws[0] + ws[0]
    total += sum(9 * ws[s - 2] * ws[s - 1] + ws[s - 1] for s in range(2, n + 1))  # stride-2 convs
    total += sum(2 * w * w + w for w in ws)  # skip merges
    total += sum(9 * ws[s - 1] * ws[s - 2] + ws[s - 2] for s in range(2, n + 1))  # upsampling convs
    for u in units(cfg):
        if cfg.keeps(u):
            w = ws[_stage(u, n) - 1]
            total += 4 * w * w + 4 * w + 2 * w if ".a" in u else 2 * (9 * w * w + w) + e * w + w + 4 * w
    return total + 2 * ws[0] + 9 * ws[0] * cfg.channels + cfg.channels


def macs(cfg: UNetConfig) -> int:
    """Multiply-accumulates of one image's noise prediction (convs, linears, attention)."""
    n, ws = len(cfg.widths), cfg.widths
    px = [(cfg.image_size // 2 ** (s - 1)) ** 2 for s in range(1, n + 1)]
    total = 32 * cfg.temb + cfg.temb * cfg.temb  # the time-embedding MLP
    total += 9 * cfg.channels * ws[0] * px[0] + 9 * ws[0] * cfg.channels * px[0]
    total += sum(9 * ws[s - 2] * ws[s - 1] * px[s - 1] for s in range(2, n + 1))
    total += sum(2 * ws[s - 1] ** 2 * px[s - 1] for s in range(1, n + 1))
    total += sum(9 * ws[s - 1] * ws[s - 2] * px[s - 2] for s in range(2, n + 1))
    for u in units(cfg):
        if cfg.keeps(u):
            s = _stage(u, n)
            w, p = ws[s - 1], px[s - 1]
            total += 4 * w * w * p + 2 * p * p * w if ".a" in u else 18 * w * w * p + cfg.temb * w
    return total
