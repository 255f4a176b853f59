"""``vit-elastic``: EfficientFormerV2-style subnets of a trained parent, with inherited weights.

Per stage: width (aligned to 8), depth, MLP ratio; in the late stages also the number of
heads and how many of the last blocks are attention blocks (attention placement, EFv2:
attention only at the end of late stages). Quality is the top-1 of the inherited-weight
subnet on the held-out digits split, after BatchNorm recalibration on the training split.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._architecture import Architecture
from .._base import PROFILED_DEVICES, Choice, ConfigOption, MetricInfo, SearchSpace, Suggest
from .._errors import InvalidArchitectureError, InvalidConfigError
from .._registry import register_space
from .model import StageConfig, ViTConfig, macs, param_count
from .parents import PARENT_CONFIGS

if TYPE_CHECKING:
    import torch

__all__ = ["ViTElasticSpace", "subnet_choices", "subnet_config", "random_subnet", "smallest_subnet"]

_ALIGN = 8  # widths are multiples of 8: what vectorised CPU kernels and most accelerators like


def _aligned(x: float) -> int:
    return max(_ALIGN, int(-(-x // _ALIGN)) * _ALIGN)


def subnet_choices(parent: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The choices of the space over ``parent``, by param name, in sampling order."""
    out: dict[str, tuple[int, ...]] = {}
    for i, s in enumerate(parent.stages, start=1):
        out[f"s{i}.width"] = tuple(sorted({_aligned(s.width * f) for f in (0.25, 0.5, 0.75, 1.0)}))
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
class ViTElasticSpace(SearchSpace):
    name = "vit-elastic"
    version = "1"

    @classmethod
    def config_options(cls) -> dict[str, ConfigOption]:
        return {
            "parent": ConfigOption("parent", "vit-small", tuple(PARENT_CONFIGS),
                                   "the trained parent (`nas parents train NAME`; trained on first use)"),
            "seed": ConfigOption("seed", 0, (), "the parent's training seed (an integer >= 0)"),
            "recalibrate": ConfigOption("recalibrate", True, (True, False),
                                        "re-estimate BatchNorm statistics of each subnet on the training split"),
        }

    def __init__(self, **config: Any) -> None:
        # the CLI passes KEY=VALUE strings: accept "3" for seed and "false" for recalibrate
        if isinstance(config.get("seed"), str) and config["seed"].isdigit():
            config["seed"] = int(config["seed"])
        if isinstance(config.get("recalibrate"), str) and config["recalibrate"].lower() in ("true", "false"):
            config["recalibrate"] = config["recalibrate"].lower() == "true"
        super().__init__(**config)
        seed = self.config["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise InvalidConfigError("space.seed", seed, "an integer >= 0")
        self.parent_config = PARENT_CONFIGS[self.config["parent"]]
        self._choices = subnet_choices(self.parent_config)

    def choices(self) -> list[Choice]:
        return [Choice(k, v, _DESCRIPTIONS[k.split(".")[1]].format(stage=k[1])) for k, v in self._choices.items()]

    def metrics(self) -> dict[str, MetricInfo]:
        return {
            "top1": MetricInfo("top1", "%", "maximize", (),
                               "top-1 of the inherited-weight subnet on the 599 held-out digits"),
            "loss": MetricInfo("loss", "nats", "minimize", (),
                               "cross-entropy on the held-out digits: finer-grained than top-1 (599 images)"),
            "params": MetricInfo("params", "count", "minimize", (), "parameters of the dense subnet"),
            "mmacs": MetricInfo("mmacs", "M", "minimize", (), "multiply-accumulates per image, millions"),
            "latency_ms": MetricInfo("latency_ms", "ms", "minimize", PROFILED_DEVICES,
                                     "latency of the dense subnet, profiled on this machine during the job"),
        }

    # -- architectures ---------------------------------------------------------------
    def sample(self, suggest: Suggest) -> Architecture:
        return self._arch({k: suggest.suggest_categorical(k, v) for k, v in self._choices.items()})

    def from_params(self, params: Mapping[str, Any]) -> Architecture:
        extra = sorted(set(params) - set(self._choices))
        if extra:
            raise InvalidArchitectureError(f"vit-elastic: unknown key {extra[0]!r}; keys are {', '.join(self._choices)}")
        for k, values in self._choices.items():
            if k not in params:
                raise InvalidArchitectureError(f"vit-elastic: missing key {k!r}; valid values: {list(values)}")
            v = params[k]
            if isinstance(v, bool) or v not in values:
                raise InvalidArchitectureError(f"vit-elastic: {k} is {v!r}; valid: {', '.join(map(str, values))}")
        return self._arch({k: params[k] for k in self._choices})

    def subnet(self, arch: Architecture) -> ViTConfig:
        """The dense network's config: what export writes beside the weights."""
        self.validate(arch)
        return subnet_config(self.parent_config, arch.params)

    def largest(self) -> Architecture:
        return self.from_params({k: v[-1] for k, v in self._choices.items()})

    def smallest(self) -> Architecture:
        return self.from_params({k: v[0] for k, v in self._choices.items()})

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Each choice divided by its largest value, then params and MACs relative to the largest subnet."""
        maxima = np.array([v[-1] for v in self._choices.values()], dtype=np.float64)
        big = subnet_config(self.parent_config, self.largest().params)
        out = np.zeros((len(archs), len(maxima) + 2), dtype=np.float32)
        for r, a in enumerate(archs):
            cfg = subnet_config(self.parent_config, a.params)
            out[r, :len(maxima)] = np.array([a.params[k] for k in self._choices], dtype=np.float64) / maxima
            out[r, -2] = param_count(cfg) / param_count(big)
            out[r, -1] = macs(cfg) / macs(big)
        return out

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
    def parent(self, *, train: bool = True, progress=None):
        """The trained parent (``spaces.TrainedParent``), trained now if it is not on disk."""
        from .._parents import load_parent

        return load_parent(self.config["parent"], self.config["seed"], train=train, progress=progress)

    def provenance(self) -> dict[str, Any]:
        p = self.parent()
        return {"parent": p.name, "seed": p.seed, "parent_digest": p.digest}

    def materialize(self, arch: Architecture, parent: Any = None, *, recalibrate: bool | None = None):
        """The dense subnet with weights sliced from ``parent`` (default: this space's trained
        parent), BatchNorm recalibrated when the space says so. With ``recalibrate=False``
        its output equals the parent run as this subnet (``SuperViT.forward(x, sub)``)."""
        from .data import digits_split
        from .model import SuperViT
        from .train import recalibrate as recal

        cfg = self.subnet(arch)
        if parent is None:
            parent = self.parent().module
        parent = getattr(parent, "module", parent)  # a TrainedParent or the module itself
        if not isinstance(parent, SuperViT) or parent.config.stages[0].width < cfg.stages[0].width:
            raise InvalidArchitectureError(
                f"vit-elastic: the parent must be the SuperViT of {self.config['parent']!r}; got {type(parent).__name__}")
        net = parent.extract(cfg).eval()
        if self.config["recalibrate"] if recalibrate is None else recalibrate:
            recal(net, digits_split()[0])
        return net

    def network_config(self, arch: Architecture) -> dict[str, Any]:
        return self.subnet(arch).to_dict()

    @classmethod
    def build_network(cls, network: Mapping[str, Any]):
        from .model import ViT

        try:
            return ViT(ViTConfig.from_dict(dict(network)))
        except (TypeError, KeyError, ValueError) as e:
            raise InvalidArchitectureError(f"vit-elastic: not a network config ({type(e).__name__}: {e})") from None

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        side = self.parent_config.image_size
        return (torch.randn(batch, self.parent_config.in_channels, side, side,
                            generator=torch.Generator().manual_seed(0)),)

    def evaluate(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        cfg = self.subnet(arch)
        out: dict[str, float] = {}
        if "params" in keys:
            out["params"] = float(param_count(cfg))
        if "mmacs" in keys:
            out["mmacs"] = macs(cfg) / 1e6
        if "top1" in keys or "loss" in keys:
            from .data import digits_split
            from .train import accuracy_and_loss

            _, _, x_test, y_test = digits_split()
            acc, loss = accuracy_and_loss(self.materialize(arch), x_test, y_test)
            out.update({k: v for k, v in (("top1", acc), ("loss", loss)) if k in keys})
        return out


_DESCRIPTIONS = {
    "width": "channels of stage {stage} (aligned to 8)",
    "depth": "blocks of stage {stage}",
    "mlp_ratio": "FFN expansion ratio of stage {stage}",
    "heads": "attention heads in stage {stage}'s attention blocks",
    "attn": "how many of stage {stage}'s last blocks hold attention",
}
