"""``unet-blocks``: block removal and stage widths of a trained DDPM U-Net (methods §5).

Choices: each stage's width (multiples of 8, so GroupNorm keeps whole groups) and, for every
ResNet and attention block of the down, middle and up paths, whether it is kept (1) or
removed (0). Quality is LAPTOP-Diff's output loss (the noise prediction's squared error
against the parent's on 256 fixed ``(x_t, t)`` pairs) and the denoising loss; the BK-SDM
removals are available as fixed baselines (:meth:`UNetBlocksSpace.baseline`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any


from .._architecture import Architecture
from .._base import ConfigOption, MetricInfo, Suggest
from .._elastic import ElasticSpace, grid
from .._errors import InvalidArchitectureError, InvalidConfigError
from .._registry import register_space
from .._slicing import GROUP_CHANNELS
from .model import UNetConfig, macs, param_count, units

if TYPE_CHECKING:
    import torch

__all__ = ["UNetBlocksSpace", "random_subnet", "smallest_subnet", "BASELINES"]

# BK-SDM's hand-designed removals (Kim et al.), on this U-Net: "base" keeps one ResNet (and
# attention) block per down and up stage (layers_per_block 2 -> 1), "small" also drops the mid block
BASELINES = ("bk-base", "bk-small")


def _widths(w: int) -> tuple[int, ...]:
    return grid(w // 2, w, GROUP_CHANNELS)


def _stages(cfg: UNetConfig) -> list[str]:
    n = len(cfg.widths)
    return [f"d{s}" for s in range(1, n + 1)] + [f"u{s}" for s in range(n, 0, -1)]


def _repair(cfg: UNetConfig, removed: set[str]) -> tuple[str, ...]:
    """Keep the first ResNet block of any stage that would have none left."""
    for st in _stages(cfg):
        if all(f"{st}.r{j}" in removed for j in range(cfg.layers)):
            removed.discard(f"{st}.r0")
    return tuple(u for u in units(cfg) if u in removed)


def random_subnet(parent: UNetConfig, rng: random.Random) -> UNetConfig:
    widths = tuple(rng.choice(_widths(w)) for w in parent.widths)
    removed = {u for u in units(parent) if rng.random() < 0.5}
    return parent.with_(widths=widths, removed=_repair(parent, removed))


def smallest_subnet(parent: UNetConfig) -> UNetConfig:
    return parent.with_(widths=tuple(_widths(w)[0] for w in parent.widths),
                        removed=_repair(parent, set(units(parent))))


@register_space
class UNetBlocksSpace(ElasticSpace):
    name = "unet-blocks"
    version = "1"
    parents = ("unet-small", "unet-tiny")

    @classmethod
    def extra_options(cls) -> dict[str, ConfigOption]:
        return {"image_size": ConfigOption(
            "image_size", 16, (), "side of the image whose latency and MACs are measured (a multiple of 4, 8..256); "
                                  "quality is measured at the parent's 16x16")}

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        side, n = self.config["image_size"], len(self.parent_config.widths)
        step = 2 ** (n - 1)
        if not isinstance(side, int) or isinstance(side, bool) or not 8 <= side <= 256 or side % step:
            raise InvalidConfigError("space.image_size", side,
                                     f"a multiple of {step} from 8 to 256 (the U-Net halves it {n - 1} times)")

    def build_choices(self) -> dict[str, tuple[int, ...]]:
        p = self.parent_config
        out: dict[str, tuple[int, ...]] = {f"s{s}.width": _widths(w) for s, w in enumerate(p.widths, 1)}
        out.update({u: (0, 1) for u in units(p)})
        return out

    def describe_choice(self, key: str) -> str:
        if key.endswith(".width"):
            return f"channels of resolution stage {key[1:-6]} (multiples of {GROUP_CHANNELS})"
        path = {"d": "down", "u": "up", "m": "middle"}[key[0]]
        kind = "attention" if ".a" in key else "ResNet"
        return f"keep (1) or remove (0) this {kind} block of the {path} path"

    def value_hint(self, key: str, value: Any) -> str:
        if key.endswith(".width") and isinstance(value, int) and value % GROUP_CHANNELS:
            return f" (widths are multiples of {GROUP_CHANNELS}, the GroupNorm group size)"
        return ""

    def check(self, params: Mapping[str, Any]) -> None:
        p = self.parent_config
        for st in _stages(p):
            keys = [f"{st}.r{j}" for j in range(p.layers)]
            if all(params.get(k) == 0 for k in keys):
                raise InvalidArchitectureError(
                    f"{self.name}: every ResNet block of stage {st} is removed ({', '.join(keys)} are 0); "
                    "keep at least one (set one of them to 1)")

    def repair(self, params: dict[str, Any]) -> dict[str, Any]:
        p = self.parent_config
        removed = _repair(p, {u for u in units(p) if params.get(u) == 0})
        return {**params, **{u: (0 if u in removed else 1) for u in units(p)}}

    def sample(self, suggest: Suggest) -> Architecture:
        """Define-by-run: a stage's last ResNet block is not asked for when the stage's other
        ResNet blocks are removed (it must stay), so an Optuna trial's parameters are always
        the network's."""
        p = self.parent_config
        params: dict[str, Any] = {}
        for k, values in self._choices.items():
            stage, _, kind = k.partition(".")
            if stage[0] in "du" and kind == f"r{p.layers - 1}" and \
                    all(params[f"{stage}.r{j}"] == 0 for j in range(p.layers - 1)):
                params[k] = 1
            else:
                params[k] = suggest.suggest_categorical(k, values)
        return self._arch(params)

    def baseline(self, name: str) -> Architecture:
        """A BK-SDM removal (``bk-base``, ``bk-small``) at full width."""
        p = self.parent_config
        if name not in BASELINES:
            raise InvalidArchitectureError(f"{self.name}: unknown baseline {name!r}; valid: {', '.join(BASELINES)}")
        if p.layers < 2:
            raise InvalidArchitectureError(f"{self.name}: {name} removes a block pair per stage; parent "
                                           f"{self.config['parent']!r} has one ResNet block per stage")
        params = {k: v[-1] for k, v in self._choices.items()}
        for u in units(p):
            if (u[0] in "du" and u.endswith(str(p.layers - 1))) or (name == "bk-small" and u.startswith("mid")):
                params[u] = 0
        return self.from_params(params)

    def metrics(self) -> dict[str, MetricInfo]:
        return {
            "output_mse": MetricInfo("output_mse", "", "minimize", (),
                                     "squared error of the noise prediction against the parent's on 256 fixed "
                                     "(x_t, t) pairs of held-out digits (LAPTOP-Diff's output loss)"),
            "denoise_loss": MetricInfo("denoise_loss", "", "minimize", (),
                                       "DDPM loss (squared error to the true noise) on the same pairs"),
            **self.size_metrics(),
        }

    def subnet(self, arch: Architecture) -> UNetConfig:
        self.validate(arch)
        p, a = self.parent_config, arch.params
        return p.with_(widths=tuple(a[f"s{s}.width"] for s in range(1, len(p.widths) + 1)),
                       removed=tuple(u for u in units(p) if a[u] == 0), image_size=self.config["image_size"])

    def count_params(self, subnet: UNetConfig) -> int:
        return param_count(subnet)

    def count_macs(self, subnet: UNetConfig) -> int:
        return macs(subnet)

    def graph(self, arch: Architecture):
        import networkx as nx

        cfg = self.subnet(arch)
        n, ws = len(cfg.widths), cfg.widths
        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        prev = "input"
        g.add_node(prev, op="input", channels=cfg.channels)

        def add(node: str, op: str, channels: int) -> None:
            nonlocal prev
            g.add_node(node, op=op, channels=channels)
            g.add_edge(prev, node)
            prev = node

        def blocks(path: str, s: int, w: int) -> None:
            for j in range(cfg.layers):
                for kind, op in (("r", "resnet"), ("a", "attention")):
                    u = f"{path}{s}.{kind}{j}"
                    if (kind == "r" or s in cfg.attn_stages) and cfg.keeps(u):
                        add(u, op, w)

        add("conv_in", "conv3x3", ws[0])
        skips: dict[int, str] = {}
        for s in range(1, n + 1):
            if s > 1:
                add(f"d{s}.down", "conv3x3_s2", ws[s - 1])
            blocks("d", s, ws[s - 1])
            skips[s] = prev  # the up path's merge of stage s reads from here
        for u in ("mid.r0", "mid.a", "mid.r1"):
            if cfg.keeps(u):
                add(u, "attention" if u == "mid.a" else "resnet", ws[-1])
        for s in range(n, 0, -1):
            add(f"u{s}.merge", "skip_merge_conv1x1", ws[s - 1])
            g.add_edge(skips[s], f"u{s}.merge")
            blocks("u", s, ws[s - 1])
            if s > 1:
                add(f"u{s}.up", "upsample_conv3x3", ws[s - 2])
        add("conv_out", "groupnorm_silu_conv3x3", cfg.channels)
        return g

    # -- the network -----------------------------------------------------------------
    @classmethod
    def network_types(cls):
        from .model import UNet

        return UNet, UNetConfig

    def run_subnet(self, parent: Any, arch: Architecture, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The parent computing as ``arch`` (weights sliced on the fly)."""
        from .model import UNet

        return self.parent_module(parent, UNet).run(x, t, self.subnet(arch))

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        import torch

        side = self.config["image_size"]
        g = torch.Generator().manual_seed(0)
        return (torch.randn(batch, self.parent_config.channels, side, side, generator=g),
                torch.randint(0, 1000, (batch,), generator=g).float())

    def measure(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        if "output_mse" in keys or "denoise_loss" in keys:
            import torch

            from .train import eval_triples

            xt, t, eps = eval_triples(self.parent_config.image_size)
            with torch.no_grad():
                pred = self.materialize(arch)(xt, t)
                if "output_mse" in keys:
                    out["output_mse"] = float(((pred - self._parent_prediction()) ** 2).mean())
                if "denoise_loss" in keys:
                    out["denoise_loss"] = float(((pred - eps) ** 2).mean())
        return out

    def _parent_prediction(self):
        import torch

        from .train import eval_triples

        p = self.parent()
        key = f"parent_prediction:{p.digest}"
        if key not in self._cache.data:
            xt, t, _ = eval_triples(self.parent_config.image_size)
            with torch.no_grad():
                self._cache.data[key] = p.module(xt, t)
        return self._cache.data[key]
