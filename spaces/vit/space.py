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
from .model import StageConfig, ViTConfig, macs, network_class, param_count

if TYPE_CHECKING:
    import torch

__all__ = ["ViTElasticSpace", "subnet_choices", "subnet_config", "random_subnet", "smallest_subnet"]

_ALIGN = 8  # widths are multiples of 8: what vectorised CPU kernels and most accelerators like


def subnet_choices(parent: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The choices of the space over ``parent``, by param name, in sampling order."""
    out: dict[str, tuple[int, ...]] = {}
    plain = parent.layout == "plain"  # every block holds attention: no placement choice, any depth
    for i, s in enumerate(parent.stages, start=1):
        out[f"s{i}.width"] = tuple(sorted({min(s.width, aligned(s.width * f, _ALIGN)) for f in (0.25, 0.5, 0.75, 1.0)}))
        out[f"s{i}.depth"] = tuple(range(1 if plain else max(1, s.attn), s.depth + 1))
        out[f"s{i}.mlp_ratio"] = tuple(range(1, s.mlp_ratio + 1))
        if s.heads:
            out[f"s{i}.heads"] = tuple(sorted({h for h in (1, 2, 4, 8) if h <= s.heads} | {s.heads}))
            if not plain:
                out[f"s{i}.attn"] = tuple(range(0, s.attn + 1))
    return out


def subnet_config(parent: ViTConfig, params: Mapping[str, Any]) -> ViTConfig:
    stages = []
    for i, s in enumerate(parent.stages, start=1):
        depth = params[f"s{i}.depth"]
        heads = params.get(f"s{i}.heads", 0)
        attn = depth if parent.layout == "plain" else params.get(f"s{i}.attn", 0)
        stages.append(StageConfig(params[f"s{i}.width"], depth, params[f"s{i}.mlp_ratio"], heads if attn else 0, attn))
    return dataclasses.replace(parent, stages=tuple(stages))


def random_subnet(parent: ViTConfig, rng: random.Random) -> ViTConfig:
    return subnet_config(parent, {k: rng.choice(v) for k, v in subnet_choices(parent).items()})


def smallest_subnet(parent: ViTConfig) -> ViTConfig:
    return subnet_config(parent, {k: v[0] for k, v in subnet_choices(parent).items()})


@register_space
class ViTElasticSpace(ElasticSpace):
    name = "vit-elastic"
    version = "1"
    parents = ("vit-small", "vit-tiny")
    importers = {"timm": "spaces.vit.timm:convert"}
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
        given = "image_size" in config
        super().__init__(**config)
        side = self.config["image_size"]
        if self.parent_config.layout == "plain":
            # the position embedding fixes an imported ViT's input size
            if not given:
                side = self.parent_config.image_size
                self.config = {**self.config, "image_size": side}
            if side != self.parent_config.image_size:
                raise InvalidConfigError("space.image_size", side, f"{self.parent_config.image_size} (the input size "
                                         f"of the imported parent {self.config['parent']!r})")
        elif not isinstance(side, int) or isinstance(side, bool) or not 8 <= side <= 64 or side % 4:
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

        if cfg.layout == "plain":
            s = cfg.stages[0]
            add("patch_embed", op=f"patch{cfg.patch_size}_linear", channels=s.width, stride=cfg.patch_size)
            for j in range(s.depth):
                add(f"s1.b{j}.attn", op="ln_mhsa", channels=s.width, heads=s.heads, head_dim=cfg.head_dim)
                add(f"s1.b{j}.mlp", op="ln_mlp", channels=s.width, hidden=s.mlp_ratio * s.width)
            add("head", op=f"{cfg.pool}_pool_ln_linear", channels=cfg.num_classes)
            return g
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
        from .train import recalibrate as recal

        cfg = self.subnet(arch)
        parent = self.parent_module(parent, network_class(self.parent_config, parent=True))
        try:
            net = parent.extract(cfg).eval()
        except (IndexError, RuntimeError) as e:  # a parent of another size: a slice falls outside it
            raise InvalidArchitectureError(f"{self.name}: the parent does not fit {self.config['parent']!r}: "
                                           f"{str(e).splitlines()[0]}") from None
        # an imported plain ViT has LayerNorms only: nothing to recalibrate
        if (self.config["recalibrate"] if recalibrate is None else recalibrate) and cfg.layout == "efv2":
            recal(net, self._digits()[0])
        return net

    def _digits(self):
        """The digits split as the parent's input: resized and channel-repeated for an imported parent."""
        import torch.nn.functional as F

        from .data import digits_split

        x_tr, y_tr, x_te, y_te = digits_split()
        cfg = self.parent_config
        if cfg.layout == "efv2":
            return x_tr, y_tr, x_te, y_te

        def fit(x):
            if cfg.image_size != x.shape[-1]:
                x = F.interpolate(x, size=(cfg.image_size,) * 2, mode="bilinear", align_corners=False)
            return x.repeat(1, cfg.in_channels, 1, 1)

        return fit(x_tr), y_tr, fit(x_te), y_te

    def run_subnet(self, parent: Any, arch: Architecture, x: torch.Tensor) -> torch.Tensor:
        """The parent computing as ``arch`` (weights sliced on the fly): what ``materialize``
        with ``recalibrate=False`` reproduces."""
        return self.parent_module(parent, network_class(self.parent_config, parent=True))(x, self.subnet(arch))

    @classmethod
    def network_types(cls):
        from .model import ViT

        return ViT, ViTConfig

    @classmethod
    def build_network(cls, network: Mapping[str, Any]):
        try:
            cfg = ViTConfig.from_dict(dict(network))
            return network_class(cfg)(cfg)
        except (TypeError, KeyError, ValueError) as e:
            raise InvalidArchitectureError(f"{cls.name}: not a network config ({type(e).__name__}: {e})") from None

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        side = self.config["image_size"]
        return (torch.randn(batch, self.parent_config.in_channels, side, side,
                            generator=torch.Generator().manual_seed(0)),)

    def measure(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        if "top1" in keys or "loss" in keys:
            from .train import accuracy_and_loss

            if self.parent_config.num_classes != 10:
                raise InvalidArchitectureError(
                    f"{self.name}: top1 and loss are measured on the 10 digit classes; parent "
                    f"{self.config['parent']!r} has {self.parent_config.num_classes} classes (search it on params, "
                    "mmacs and latency_ms, or import a checkpoint fine-tuned on the digits)")
            _, _, x_test, y_test = self._digits()
            acc, loss = accuracy_and_loss(self.materialize(arch), x_test, y_test)
            out.update({k: v for k, v in (("top1", acc), ("loss", loss)) if k in keys})
        return out
