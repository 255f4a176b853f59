"""``unet-blocks`` parents imported from diffusers' ``UNet2DModel``.

``DiffusersUNet`` is ``UNet2DModel`` (positional time embedding, ``DownBlock2D`` /
``AttnDownBlock2D`` / ``UpBlock2D`` / ``AttnUpBlock2D``, conv down- and upsampling, the
default ``UNetMidBlock2D``) rebuilt from plain torch layers under diffusers' parameter
names, so a diffusers state dict loads as it is and a subnet's weights load back into
diffusers' layout. It computes ``UNet2DModel(...).sample`` for ``forward(x, t)``.

diffusers changes channels inside its ResNet blocks (``conv_shortcut``) and keeps one skip
per ResNet block and per downsampler, so a block can be removed only where it can become the
identity: a down or middle ResNet block whose input and output widths agree, an up ResNet
block whose incoming hidden state has its output width (its skip is then dropped), and any
attention block. The skips are pushed and popped as in diffusers whatever is removed, so
every kept block sees the tensors it saw in the parent. Widths are not searched for these
parents (their skips concatenate, which prefix slicing cannot follow).

Unit names are those of the project's U-Net: ``d{s}.r{j}``, ``d{s}.a{j}``, ``mid.r0``,
``mid.a``, ``mid.r1``, ``u{s}.r{j}`` (``j < layers + 1`` on the up path), ``u{s}.a{j}``,
with ``s`` the resolution stage (1 is the finest).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checkpoints import check_state_dict, read_pretrained
from .._errors import CheckpointError

__all__ = ["DiffusersUNetConfig", "DiffusersUNet", "convert", "config_from_diffusers", "diffusers_units",
           "removable_units"]


@dataclass(frozen=True)
class DiffusersUNetConfig:
    widths: tuple[int, ...]  # block_out_channels
    layers: int  # layers_per_block
    attn_down: tuple[int, ...]  # stages (1-based) whose down block is an AttnDownBlock2D
    attn_up: tuple[int, ...]  # stages whose up block is an AttnUpBlock2D
    removed: tuple[str, ...] = ()
    image_size: int = 16  # sample_size
    channels: int = 1  # in_channels
    out_channels: int = 1
    mid_attention: bool = True
    head_dim: int = 0  # attention_head_dim; 0: one head per block (diffusers' None)
    groups: int = 32
    eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    temb: int = 0  # time embedding width; 0: 4 * widths[0]
    down_padding: int = 1
    layout: str = "diffusers"

    @property
    def temb_dim(self) -> int:
        return self.temb or 4 * self.widths[0]

    def keeps(self, unit: str) -> bool:
        return unit not in self.removed

    def with_(self, **changes: Any) -> DiffusersUNetConfig:
        if changes.get("widths", self.widths) != self.widths:
            raise ValueError(f"widths: {changes['widths']}; a diffusers U-Net keeps its widths {self.widths}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d, **{k: list(d[k]) for k in ("widths", "attn_down", "attn_up", "removed")}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusersUNetConfig:
        d = dict(d)
        for k in ("widths", "attn_down", "attn_up", "removed"):
            if k in d:
                d[k] = tuple(d[k])
        cfg = cls(**d)
        bad = sorted(set(cfg.removed) - set(removable_units(cfg)))
        if bad:
            raise ValueError(f"removed unit {bad[0]!r} is not a removable block of this network")
        return cfg


# -- units --------------------------------------------------------------------------------
def _io(cfg: DiffusersUNetConfig, unit: str) -> tuple[int, int]:
    """(incoming hidden width, output width) of a ResNet unit."""
    n, w = len(cfg.widths), cfg.widths
    if unit.startswith("mid"):
        return w[-1], w[-1]
    s, j = int(unit[1:unit.index(".")]), int(unit[unit.index(".") + 2:])
    if unit[0] == "d":
        return (w[max(s - 2, 0)] if j == 0 else w[s - 1]), w[s - 1]
    return ((w[s] if s < n else w[-1]) if j == 0 else w[s - 1]), w[s - 1]


def diffusers_units(cfg: DiffusersUNetConfig) -> list[str]:
    """Every block in forward order (the removable ones are :func:`removable_units`)."""
    n, out = len(cfg.widths), []
    for s in range(1, n + 1):
        for j in range(cfg.layers):
            out += [f"d{s}.r{j}"] + ([f"d{s}.a{j}"] if s in cfg.attn_down else [])
    out += ["mid.r0"] + (["mid.a"] if cfg.mid_attention else []) + ["mid.r1"]
    for s in range(n, 0, -1):
        for j in range(cfg.layers + 1):
            out += [f"u{s}.r{j}"] + ([f"u{s}.a{j}"] if s in cfg.attn_up else [])
    return out


def removable_units(cfg: DiffusersUNetConfig) -> list[str]:
    """The blocks that can become the identity; a stage's only ResNet block stays (a stage
    keeps at least one)."""
    single = {u for us in stage_resnets(cfg).values() if len(us) == 1 for u in us}
    return [u for u in diffusers_units(cfg)
            if ".a" in u or u == "mid.a" or (_io(cfg, u)[0] == _io(cfg, u)[1] and u not in single)]


def stage_resnets(cfg: DiffusersUNetConfig) -> dict[str, list[str]]:
    """The ResNet units of each down and up stage (``d1`` .. ``u1``)."""
    n = len(cfg.widths)
    out = {f"d{s}": [f"d{s}.r{j}" for j in range(cfg.layers)] for s in range(1, n + 1)}
    out.update({f"u{s}": [f"u{s}.r{j}" for j in range(cfg.layers + 1)] for s in range(n, 0, -1)})
    return out


# -- the network ----------------------------------------------------------------------------
class _Resnet(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class _Attention(nn.Module):
    def __init__(self, ch: int, head_dim: int, groups: int, eps: float) -> None:
        super().__init__()
        self.heads = ch // head_dim if head_dim else 1
        self.group_norm = nn.GroupNorm(groups, ch, eps=eps)
        self.to_q, self.to_k, self.to_v = nn.Linear(ch, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        q, k, v = (f(t).view(b, -1, self.heads, c // self.heads).transpose(1, 2) for f in (self.to_q, self.to_k, self.to_v))
        a = torch.softmax((q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5, dim=-1)
        y = self.to_out[0]((a @ v).transpose(1, 2).reshape(b, h * w, c))
        return x + y.transpose(1, 2).reshape(b, c, h, w)


class _Sampler(nn.Module):
    """diffusers' Downsample2D / Upsample2D with a conv: only the conv's name matters (``run`` applies it)."""

    def __init__(self, ch: int, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride, padding)


def _blocks(make: dict[str, nn.Module]) -> nn.ModuleDict:
    return nn.ModuleDict(make)  # keys "0", "1", ...: diffusers' ModuleList names, with gaps for removed blocks


class DiffusersUNet(nn.Module):
    """``UNet2DModel`` with the blocks of ``config.removed`` left out; ``forward(x, t)``
    returns the predicted noise; ``run(x, t, sub)`` computes as the subnet ``sub``."""

    def __init__(self, config: DiffusersUNetConfig) -> None:
        super().__init__()
        self.config = c = config
        n, w, g, e, temb = len(c.widths), c.widths, c.groups, c.eps, c.temb_dim
        keep = c.keeps
        self.conv_in = nn.Conv2d(c.channels, w[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(w[0], temb)
        self.time_embedding.linear_2 = nn.Linear(temb, temb)
        self.down_blocks = nn.ModuleList()
        for s in range(1, n + 1):
            blk = nn.Module()
            blk.resnets = _blocks({str(j): _Resnet(*_io(c, f"d{s}.r{j}"), temb, g, e)
                                   for j in range(c.layers) if keep(f"d{s}.r{j}")})
            if s in c.attn_down:
                blk.attentions = _blocks({str(j): _Attention(w[s - 1], c.head_dim, g, e)
                                          for j in range(c.layers) if keep(f"d{s}.a{j}")})
            if s < n:
                blk.downsamplers = nn.ModuleList([_Sampler(w[s - 1], 2, c.down_padding)])
            self.down_blocks.append(blk)
        self.mid_block = nn.Module()
        self.mid_block.resnets = _blocks({str(k): _Resnet(w[-1], w[-1], temb, g, e) for k in (0, 1) if keep(f"mid.r{k}")})
        if c.mid_attention:
            self.mid_block.attentions = _blocks({"0": _Attention(w[-1], c.head_dim, g, e)} if keep("mid.a") else {})
        self.up_blocks = nn.ModuleList()
        for s in range(n, 0, -1):
            blk = nn.Module()
            skip_in = w[max(s - 2, 0)]
            res = {}
            for j in range(c.layers + 1):
                if keep(f"u{s}.r{j}"):
                    hin, out = _io(c, f"u{s}.r{j}")
                    res[str(j)] = _Resnet(hin + (skip_in if j == c.layers else out), out, temb, g, e)
            blk.resnets = _blocks(res)
            if s in c.attn_up:
                blk.attentions = _blocks({str(j): _Attention(w[s - 1], c.head_dim, g, e)
                                          for j in range(c.layers + 1) if keep(f"u{s}.a{j}")})
            if s > 1:
                blk.upsamplers = nn.ModuleList([_Sampler(w[s - 1])])
            self.up_blocks.append(blk)
        self.conv_norm_out = nn.GroupNorm(g, w[0], eps=e)
        self.conv_out = nn.Conv2d(w[0], c.out_channels, 3, padding=1)

    def _time(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        c, dim = self.config, self.config.widths[0]
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(batch) if torch.as_tensor(t).numel() == 1 \
            else torch.as_tensor(t, dtype=torch.float32).reshape(-1)
        half = dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / (half - c.freq_shift))
        arg = t[:, None] * freqs[None]
        emb = torch.cat([torch.cos(arg), torch.sin(arg)] if c.flip_sin_to_cos else [torch.sin(arg), torch.cos(arg)], -1)
        if dim % 2:
            emb = F.pad(emb, (0, 1))
        return self.time_embedding.linear_2(F.silu(self.time_embedding.linear_1(emb)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.run(x, t, None)

    def run(self, x: torch.Tensor, t: torch.Tensor, sub: DiffusersUNetConfig | None) -> torch.Tensor:
        c, n = self.config, len(self.config.widths)
        gone = set(sub.removed if sub is not None else c.removed)

        def get(blocks: nn.Module, name: str, j: int, unit: str) -> nn.Module | None:
            d = getattr(blocks, name, None)
            return None if d is None or unit in gone else d[str(j)]  # a removed unit is the identity

        emb = self._time(t, x.shape[0])
        h = self.conv_in(x)
        skips = [h]
        for s, blk in zip(range(1, n + 1), self.down_blocks):
            for j in range(c.layers):
                if (r := get(blk, "resnets", j, f"d{s}.r{j}")) is not None:
                    h = r(h, emb)
                if (a := get(blk, "attentions", j, f"d{s}.a{j}")) is not None:
                    h = a(h)
                skips.append(h)
            if s < n:
                conv = blk.downsamplers[0].conv
                h = conv(F.pad(h, (0, 1, 0, 1))) if c.down_padding == 0 else conv(h)
                skips.append(h)
        m = self.mid_block
        for unit, name, j in (("mid.r0", "resnets", 0), ("mid.a", "attentions", 0), ("mid.r1", "resnets", 1)):
            if (mod := get(m, name, j, unit)) is not None:
                h = mod(h, emb) if name == "resnets" else mod(h)
        for s, blk in zip(range(n, 0, -1), self.up_blocks):
            for j in range(c.layers + 1):
                skip = skips.pop()
                if (r := get(blk, "resnets", j, f"u{s}.r{j}")) is not None:
                    h = r(torch.cat([h, skip], dim=1), emb)
                if (a := get(blk, "attentions", j, f"u{s}.a{j}")) is not None:
                    h = a(h)
            if s > 1:
                h = blk.upsamplers[0].conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.conv_norm_out(h)))


# -- importing --------------------------------------------------------------------------------
_DEFAULTS = {  # UNet2DModel's defaults for the keys a config.json may leave out
    "in_channels": 3, "out_channels": 3, "center_input_sample": False, "time_embedding_type": "positional",
    "time_embedding_dim": None, "freq_shift": 0, "flip_sin_to_cos": True,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2D", "up_block_types": ("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (224, 448, 672, 896), "layers_per_block": 2, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv", "act_fn": "silu",
    "attention_head_dim": 8, "norm_num_groups": 32, "attn_norm_num_groups": None, "norm_eps": 1e-5,
    "resnet_time_scale_shift": "default", "add_attention": True, "class_embed_type": None, "num_class_embeds": None,
    "sample_size": None,
}
_REQUIRED = {"center_input_sample": False, "time_embedding_type": "positional", "mid_block_scale_factor": 1,
             "downsample_type": "conv", "upsample_type": "conv", "act_fn": "silu", "resnet_time_scale_shift": "default",
             "class_embed_type": None, "num_class_embeds": None, "mid_block_type": "UNetMidBlock2D"}


def config_from_diffusers(config: dict[str, Any]) -> DiffusersUNetConfig:
    """The network a ``UNet2DModel`` config describes; options this importer has no layer
    for are refused by name with the supported value."""
    cfg = {**_DEFAULTS, **{k: v for k, v in config.items() if not k.startswith("_")}}
    for key, value in _REQUIRED.items():
        if cfg[key] != value:
            raise CheckpointError(f"UNet2DModel config: {key} is {cfg[key]!r}; unet-blocks imports {value!r} only")
    if cfg["attn_norm_num_groups"] not in (None, cfg["norm_num_groups"]):
        raise CheckpointError(f"UNet2DModel config: attn_norm_num_groups is {cfg['attn_norm_num_groups']!r}; "
                              "unet-blocks imports None only")
    widths, down, up = tuple(cfg["block_out_channels"]), tuple(cfg["down_block_types"]), tuple(cfg["up_block_types"])
    n = len(widths)
    for name, types, ok in (("down_block_types", down, ("DownBlock2D", "AttnDownBlock2D")),
                            ("up_block_types", up, ("UpBlock2D", "AttnUpBlock2D"))):
        bad = [t for t in types if t not in ok]
        if bad or len(types) != n:
            raise CheckpointError(f"UNet2DModel config: {name} is {list(types)}; unet-blocks imports "
                                  f"{n} of {', '.join(ok)}")
    side = cfg["sample_size"]
    if isinstance(side, (list, tuple)):
        if len(set(side)) != 1:
            raise CheckpointError(f"UNet2DModel config: sample_size {list(side)} is not square")
        side = side[0]
    step = 2 ** (n - 1)
    if not isinstance(side, int) or side < step or side % step:
        raise CheckpointError(f"UNet2DModel config: sample_size is {side!r}; unet-blocks needs a multiple of {step} "
                              f"(the image size it is evaluated at)")
    return DiffusersUNetConfig(
        widths, int(cfg["layers_per_block"]), tuple(i + 1 for i, t in enumerate(down) if t == "AttnDownBlock2D"),
        tuple(n - i for i, t in enumerate(up) if t == "AttnUpBlock2D"), (), side, int(cfg["in_channels"]),
        int(cfg["out_channels"]), bool(cfg["add_attention"]), int(cfg["attention_head_dim"] or 0),
        int(cfg["norm_num_groups"]), float(cfg["norm_eps"]), bool(cfg["flip_sin_to_cos"]), float(cfg["freq_shift"]),
        int(cfg["time_embedding_dim"] or 0), int(cfg["downsample_padding"]))


def convert(source: Any) -> tuple[DiffusersUNetConfig, DiffusersUNet]:
    """``(config, DiffusersUNet with the weights)`` from a ``UNet2DModel``, or from the
    directory ``save_pretrained`` wrote (``config.json`` and the weights file)."""
    config, sd = read_pretrained(source, "diffusers checkpoint", "UNet2DModel",
                                 ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors",
                                  "diffusion_pytorch_model.bin"))
    if config.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise CheckpointError(f"diffusers checkpoint: {config['_class_name']} is not imported; unet-blocks imports "
                              "UNet2DModel")
    cfg = config_from_diffusers(config)
    net = DiffusersUNet(cfg)
    net.load_state_dict(check_state_dict(net, sd, "diffusers checkpoint"))
    return cfg, net.eval()


def diffusers_param_count(cfg: DiffusersUNetConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in DiffusersUNet(cfg).parameters())


def diffusers_macs(cfg: DiffusersUNetConfig) -> int:
    """Multiply-accumulates of one forward pass at ``cfg.image_size`` (convs, linears, attention)."""
    with torch.device("meta"):  # shapes only; removed units are skipped below
        net = DiffusersUNet(replace(cfg, removed=()))
    total, n, side = 0, len(cfg.widths), cfg.image_size
    total += net.conv_in.weight.numel() * side * side + 2 * cfg.widths[0] * cfg.temb_dim

    def res(m: _Resnet, hw: int) -> int:
        s = (m.conv1.weight.numel() + m.conv2.weight.numel()) * hw
        return s + (m.conv_shortcut.weight.numel() * hw if m.conv_shortcut is not None else 0)

    def att(ch: int, hw: int) -> int:
        return 4 * hw * ch * ch + 2 * hw * hw * ch

    for s, blk in zip(range(1, n + 1), net.down_blocks):
        hw = (side >> (s - 1)) ** 2
        for j in range(cfg.layers):
            total += res(blk.resnets[str(j)], hw) if cfg.keeps(f"d{s}.r{j}") else 0
            total += att(cfg.widths[s - 1], hw) if s in cfg.attn_down and cfg.keeps(f"d{s}.a{j}") else 0
        if s < n:
            total += blk.downsamplers[0].conv.weight.numel() * (side >> s) ** 2
    hw = (side >> (n - 1)) ** 2
    for k in (0, 1):
        total += res(net.mid_block.resnets[str(k)], hw) if cfg.keeps(f"mid.r{k}") else 0
    total += att(cfg.widths[-1], hw) if cfg.mid_attention and cfg.keeps("mid.a") else 0
    for s, blk in zip(range(n, 0, -1), net.up_blocks):
        hw = (side >> (s - 1)) ** 2
        for j in range(cfg.layers + 1):
            total += res(blk.resnets[str(j)], hw) if cfg.keeps(f"u{s}.r{j}") else 0
            total += att(cfg.widths[s - 1], hw) if s in cfg.attn_up and cfg.keeps(f"u{s}.a{j}") else 0
        if s > 1:
            total += blk.upsamplers[0].conv.weight.numel() * (side >> (s - 2)) ** 2
    return total + net.conv_out.weight.numel() * side * side
