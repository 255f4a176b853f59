"""``vit-elastic``: EfficientFormerV2-style subnets of a trained parent, with inherited weights.

Per stage: width (aligned to 8), depth, MLP ratio; in the late stages also the number of
heads and how many of the last blocks are attention blocks (attention placement, EFv2:
attention only at the end of late stages). Quality is the top-1 of the inherited-weight
subnet on the held-out digits split, after BatchNorm recalibration on the training split.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any


from .._architecture import Architecture
from .._base import ConfigOption, MetricInfo
from .._elastic import ElasticSpace, aligned
from .._errors import InvalidArchitectureError, InvalidConfigError
from .._registry import register_space
from .model import StageConfig, ViTConfig, macs, param_count

if TYPE_CHECKING:
    import torch

__all__ = ["ViTElasticSpace", "subnet_choices", "subnet_config", "random_subnet", "smallest_subnet"]

_ALIGN = 8  # widths are multiples of 8: what vectorised CPU kernels and most accelerators like


def subnet_choices(parent: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The choices of the space over ``parent``, by param name, in sampling order."""
    out: dict[str, tuple[int, ...]] = {}
    for i, s in enumerate(parent.stages, start=1):
        out[f"s{i}.width"] = tuple(sorted({aligned(s.width * f, _ALIGN) for f in (0.25, 0.5, 0.75, 1.0)}))
        out[f"s{i}.depth"] = tuple(range(max(1, s.attn), s.depth + 1))
        out[f"s{i}.mlp_ratio"] = tuple(range(1, s.mlp_ratio + 1))
        if s.heads:
            out[f"s{i}.heads"] = tuple(h for h in (1, 2, 4, 8) if h <= s.heads)
            out[f"s{i}.attn"] = tuple(range(0, s.attn + 1))
    return out


def subnet_config(parent: ViTConfig, params: Mapping[str, Any]) -> ViTConfig:
    stages = []
    for i, s in enumerate(parent.stages, start=1):
        heads = params.get(f"s{i}.heads", 0)
        attn = params.get(f"s{i}.attn", 0)
        stages.append(StageConfig(params[f"s{i}.width"], params[f"s{i}.depth"], params[f"s{i}.mlp_ratio"],
                                  heads if attn else 0, attn))
    return ViTConfig(tuple(stages), parent.head_dim, parent.in_channels, parent.num_classes, parent.image_size)


def random_subnet(parent: ViTConfig, rng: random.Random) -> ViTConfig:
    return subnet_config(parent, {k: rng.choice(v) for k, v in subnet_choices(parent).items()})


def smallest_subnet(parent: ViTConfig) -> ViTConfig:
    return subnet_config(parent, {k: v[0] for k, v in subnet_choices(parent).items()})


@register_space
class ViTElasticSpace(ElasticSpace):
    name = "vit-elastic"
    version = "1"
    parents = ("vit-small", "vit-tiny")
    descriptions = {
        "width": "channels of stage {unit} (aligned to 8)",
        "depth": "blocks of stage {unit}",
        "mlp_ratio": "FFN expansion ratio of stage {unit}",
        "heads": "attention heads in stage {unit}'s attention blocks",
        "attn": "how many of stage {unit}'s last blocks hold attention",
    }

    @classmethod
    def extra_options(cls) -> dict[str, ConfigOption]:
        return {"recalibrate": ConfigOption("recalibrate", True, (True, False),
                                            "re-estimate BatchNorm statistics of each subnet on the training split"),
                "image_size": ConfigOption("image_size", 8, (),
                                           "side of the image whose latency and MACs are measured (a multiple of 4, "
                                           "8..64); quality is measured on the 8x8 digits")}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        side = self.config["image_size"]
        if not isinstance(side, int) or isinstance(side, bool) or not 8 <= side <= 64 or side % 4:
            raise InvalidConfigError("space.image_size", side, "a multiple of 4 from 8 to 64 (two stride-2 stages)")

    def build_choices(self) -> dict[str, tuple[int, ...]]:
        return subnet_choices(self.parent_config)

    def metrics(self) -> dict[str, MetricInfo]:
        return {
            "top1": MetricInfo("top1", "%", "maximize", (),
                               "top-1 of the inherited-weight subnet on the 599 held-out digits"),
            "loss": MetricInfo("loss", "nats", "minimize", (),
                               "cross-entropy on the held-out digits: finer-grained than top-1 (599 images)"),
            **self.size_metrics(),
        }

    # -- architectures ---------------------------------------------------------------
    def subnet(self, arch: Architecture) -> ViTConfig:
        """The dense network's config: what export writes beside the weights."""
        self.validate(arch)
        return dataclasses.replace(subnet_config(self.parent_config, arch.params), image_size=self.config["image_size"])

    def count_params(self, subnet: ViTConfig) -> int:
        return param_count(subnet)

    def count_macs(self, subnet: ViTConfig) -> int:
        return macs(subnet)

    def graph(self, arch: Architecture):
        import networkx as nx

        cfg = self.subnet(arch)
        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        prev = "input"
        g.add_node(prev, op="input", channels=cfg.in_channels)

        def add(node: str, **attrs: Any) -> None:
            nonlocal prev
            g.add_node(node, **attrs)
            g.add_edge(prev, node)
            prev = node

        add("stem", op="conv3x3_bn_gelu", channels=cfg.stages[0].width, stride=1)
        for i, s in enumerate(cfg.stages, start=1):
            if i > 1:
                add(f"s{i}.down", op="conv3x3_bn_gelu", channels=s.width, stride=2)
            for j in range(s.depth):
                if j >= s.depth - s.attn:
                    add(f"s{i}.b{j}.attn", op="mhsa", channels=s.width, heads=s.heads, head_dim=cfg.head_dim)
                add(f"s{i}.b{j}.ffn", op="ffn_dw", channels=s.width, hidden=s.mlp_ratio * s.width)
        add("head", op="pool_linear", channels=cfg.num_classes)
        return g

    # -- the network -----------------------------------------------------------------
    def materialize(self, arch: Architecture, parent: Any = None, *, recalibrate: bool | None = None):
        """The dense subnet with weights sliced from ``parent`` (default: this space's trained
        parent), BatchNorm recalibrated when the space says so. With ``recalibrate=False``
        its output equals the parent run as this subnet (``SuperViT.forward(x, sub)``)."""
        from .data import digits_split
        from .model import SuperViT
        from .train import recalibrate as recal

        cfg = self.subnet(arch)
        parent = self.parent_module(parent, SuperViT)
        try:
            net = parent.extract(cfg).eval()
        except (IndexError, RuntimeError) as e:  # a parent of another size: a slice falls outside it
            raise InvalidArchitectureError(f"{self.name}: the parent does not fit {self.config['parent']!r}: "
                                           f"{str(e).splitlines()[0]}") from None
        if self.config["recalibrate"] if recalibrate is None else recalibrate:
            recal(net, digits_split()[0])
        return net

    def run_subnet(self, parent: Any, arch: Architecture, x: torch.Tensor) -> torch.Tensor:
        """The parent computing as ``arch`` (weights sliced on the fly): what ``materialize``
        with ``recalibrate=False`` reproduces."""
        from .model import SuperViT

        return self.parent_module(parent, SuperViT)(x, self.subnet(arch))

    @classmethod
    def network_types(cls):
        from .model import ViT

        return ViT, ViTConfig

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        side = self.config["image_size"]
        return (torch.randn(batch, self.parent_config.in_channels, side, side,
                            generator=torch.Generator().manual_seed(0)),)

    def measure(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        if "top1" in keys or "loss" in keys:
            from .data import digits_split
            from .train import accuracy_and_loss

            _, _, x_test, y_test = digits_split()
            acc, loss = accuracy_and_loss(self.materialize(arch), x_test, y_test)
            out.update({k: v for k, v in (("top1", acc), ("loss", loss)) if k in keys})
        return out
