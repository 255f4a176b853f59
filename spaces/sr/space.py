"""``sr-adaptive``: compiler-aware SR NAS (methods §3) over a trained parent, inherited weights.

Choices: the trunk width, and for every adaptive block its width, 0 meaning the block is
skipped (the depth gate), all on a grid aligned to ``align`` channels (vectorised CPU, GPU
and DSP kernels run whole multiples fastest: latency is a staircase in width). Quality is
PSNR and SSIM of the inherited-weight subnet on five held-out photos, bicubic beside.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any


from .._architecture import Architecture
from .._base import ConfigOption, MetricInfo
from .._elastic import ElasticSpace, grid
from .._errors import InvalidConfigError
from .._registry import register_space
from .model import SCALES, SRConfig, macs, param_count

if TYPE_CHECKING:
    import torch

__all__ = ["SRAdaptiveSpace", "random_subnet", "smallest_subnet"]

_TRAIN_ALIGN = 4  # parents train on the finest grid, so every alignment's subnets are trained


def random_subnet(parent: SRConfig, rng: random.Random) -> SRConfig:
    widths = grid(parent.width // 2, parent.width, _TRAIN_ALIGN)
    return SRConfig(rng.choice(widths), tuple(rng.choice((0,) + grid(_TRAIN_ALIGN, b, _TRAIN_ALIGN))
                                              for b in parent.blocks), parent.scales)


def smallest_subnet(parent: SRConfig) -> SRConfig:
    return SRConfig(grid(parent.width // 2, parent.width, _TRAIN_ALIGN)[0], (0,) * len(parent.blocks), parent.scales)


@register_space
class SRAdaptiveSpace(ElasticSpace):
    name = "sr-adaptive"
    version = "1"
    parents = ("sr-small", "sr-tiny")

    @classmethod
    def extra_options(cls) -> dict[str, ConfigOption]:
        return {
            "scale": ConfigOption("scale", 2, SCALES, "upsampling factor (pixel shuffle)"),
            "align": ConfigOption("align", 8, (8, 4), "widths are multiples of this many channels"),
            "image_size": ConfigOption("image_size", 64, (),
                                       "side of the low-resolution input whose latency and MACs are measured (8..1024)"),
        }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        side = self.config["image_size"]
        if not isinstance(side, int) or isinstance(side, bool) or not 8 <= side <= 1024:
            raise InvalidConfigError("space.image_size", side, "an integer from 8 to 1024 (pixels of the LR input)")

    def build_choices(self) -> dict[str, tuple[int, ...]]:
        p, a = self.parent_config, self.config["align"]
        out = {"width": grid(p.width // 2, p.width, a)}
        for i, b in enumerate(p.blocks, 1):
            out[f"b{i}.width"] = (0,) + grid(a, b, a)
        return out

    def describe_choice(self, key: str) -> str:
        if key == "width":
            return "trunk channels (head, every block's output, tail input)"
        return f"channels of adaptive block {key[1:-6]} (0: the block is skipped)"

    def value_hint(self, key: str, value: Any) -> str:
        a = self.config["align"]
        if isinstance(value, int) and value % a:
            return f" (widths are multiples of {a}, the space's alignment)"
        return ""

    def metrics(self) -> dict[str, MetricInfo]:
        s = self.config["scale"]
        return {
            "psnr": MetricInfo("psnr", "dB", "maximize", (), f"PSNR (luma) at x{s} on five held-out photos"),
            "ssim": MetricInfo("ssim", "", "maximize", (), f"SSIM (luma) at x{s} on five held-out photos"),
            "psnr_bicubic": MetricInfo("psnr_bicubic", "dB", "maximize", (), "PSNR of bicubic upsampling (reference)"),
            "ssim_bicubic": MetricInfo("ssim_bicubic", "", "maximize", (), "SSIM of bicubic upsampling (reference)"),
            **self.size_metrics(),
        }

    def subnet(self, arch: Architecture) -> SRConfig:
        """The dense network's config (one tail: the space's scale)."""
        self.validate(arch)
        p = arch.params
        return SRConfig(p["width"], tuple(p[k] for k in self._choices if k != "width"), (self.config["scale"],))

    def count_params(self, subnet: SRConfig) -> int:
        return param_count(subnet)

    def count_macs(self, subnet: SRConfig) -> int:
        return macs(subnet, self.config["image_size"])

    def size_features(self, subnet: SRConfig) -> tuple[float, ...]:
        return (float(sum(1 for b in subnet.blocks if b)), *super().size_features(subnet))

    def graph(self, arch: Architecture):
        import networkx as nx

        cfg, s = self.subnet(arch), self.config["scale"]
        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        g.add_node("input", op="input", channels=3)
        g.add_node("head", op="conv3x3", channels=cfg.width)
        g.add_edge("input", "head")
        prev = "head"
        for i, inner in enumerate(cfg.blocks, 1):
            if inner:
                g.add_node(f"b{i}.conv1", op="conv3x3_relu", channels=inner)
                g.add_node(f"b{i}.conv2", op="conv3x3", channels=cfg.width)
                g.add_node(f"b{i}.add", op="add", channels=cfg.width)
                g.add_edges_from([(prev, f"b{i}.conv1"), (f"b{i}.conv1", f"b{i}.conv2"), (f"b{i}.conv2", f"b{i}.add"),
                                  (prev, f"b{i}.add")])
                prev = f"b{i}.add"
        g.add_node("tail", op="conv3x3", channels=3 * s * s)
        g.add_node("shuffle", op="pixel_shuffle", channels=3, scale=s)
        g.add_node("bicubic", op="resize_bicubic", channels=3, scale=s)
        g.add_node("output", op="add", channels=3)
        g.add_edges_from([(prev, "tail"), ("tail", "shuffle"), ("input", "bicubic"), ("shuffle", "output"),
                          ("bicubic", "output")])
        return g

    # -- the network -----------------------------------------------------------------
    @classmethod
    def network_types(cls):
        from .model import SRNet

        return SRNet, SRConfig

    def run_subnet(self, parent: Any, arch: Architecture, x: torch.Tensor) -> torch.Tensor:
        """The parent computing as ``arch`` (weights sliced on the fly)."""
        from .model import SRNet

        return self.parent_module(parent, SRNet).run(x, self.subnet(arch), self.config["scale"])

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        side = self.config["image_size"]
        return (torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0)),)

    def measure(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        scale = self.config["scale"]
        out: dict[str, float] = {}
        if "psnr_bicubic" in keys or "ssim_bicubic" in keys:
            from .train import bicubic_scores

            p, s = bicubic_scores(scale)
            out.update({k: v for k, v in (("psnr_bicubic", p), ("ssim_bicubic", s)) if k in keys})
        if "psnr" in keys or "ssim" in keys:
            from .train import evaluate_sr

            p, s = evaluate_sr(self.materialize(arch), None, scale)
            out.update({k: v for k, v in (("psnr", p), ("ssim", s)) if k in keys})
        return out
