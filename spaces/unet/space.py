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


def _diffusers(cfg: Any) -> bool:
    return getattr(cfg, "layout", "") == "diffusers"


def _units(cfg: Any) -> list[str]:
    """The blocks that are choices: all of them in the project's U-Net; in an imported
    diffusers U-Net those that can become the identity (``spaces.unet.diffusers``)."""
    if _diffusers(cfg):
        from .diffusers import removable_units

        return removable_units(cfg)
    return units(cfg)


def _stage_resnets(cfg: Any) -> dict[str, list[str]]:
    """The ResNet blocks of each down and up stage that are choices."""
    if _diffusers(cfg):
        from .diffusers import stage_resnets

        choice = set(_units(cfg))
        return {st: [u for u in us if u in choice] for st, us in stage_resnets(cfg).items()
                if all(u in choice for u in us)}  # a stage with a fixed ResNet block cannot be emptied
    n = len(cfg.widths)
    return {st: [f"{st}.r{j}" for j in range(cfg.layers)]
            for st in [f"d{s}" for s in range(1, n + 1)] + [f"u{s}" for s in range(n, 0, -1)]}


def _repair(cfg: Any, removed: set[str]) -> tuple[str, ...]:
    """Keep the first ResNet block of any stage that would have none left."""
    for keys in _stage_resnets(cfg).values():
        if all(k in removed for k in keys):
            removed.discard(keys[0])
    return tuple(u for u in _units(cfg) if u in removed)


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
    importers = {"diffusers": "spaces.unet.diffusers:convert"}

    @classmethod
    def extra_options(cls) -> dict[str, ConfigOption]:
        return {"image_size": ConfigOption(
            "image_size", 16, (), "side of the image whose latency and MACs are measured (a multiple of 4, 8..256); "
                                  "quality is measured at the parent's 16x16")}

    def __init__(self, **config: Any) -> None:
        given = "image_size" in config
        super().__init__(**config)
        if not given:  # an imported parent's default is the size it was trained at
            self.config = {**self.config, "image_size": self.parent_config.image_size}
        side, n = self.config["image_size"], len(self.parent_config.widths)
        step = 2 ** (n - 1)
        if not isinstance(side, int) or isinstance(side, bool) or not 8 <= side <= 256 or side % step:
            raise InvalidConfigError("space.image_size", side,
                                     f"a multiple of {step} from 8 to 256 (the U-Net halves it {n - 1} times)")

    def build_choices(self) -> dict[str, tuple[int, ...]]:
        p = self.parent_config
        out: dict[str, tuple[int, ...]] = {}
        if not _diffusers(p):  # a diffusers U-Net's skips concatenate: its widths are fixed
            out.update({f"s{s}.width": _widths(w) for s, w in enumerate(p.widths, 1)})
        out.update({u: (0, 1) for u in _units(p)})
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
        for st, keys in _stage_resnets(self.parent_config).items():
            if all(params.get(k) == 0 for k in keys):
                raise InvalidArchitectureError(
                    f"{self.name}: every ResNet block of stage {st} is removed ({', '.join(keys)} are 0); "
                    "keep at least one (set one of them to 1)")

    def repair(self, params: dict[str, Any]) -> dict[str, Any]:
        p = self.parent_config
        removed = _repair(p, {u for u in _units(p) if params.get(u) == 0})
        return {**params, **{u: (0 if u in removed else 1) for u in _units(p)}}

    def sample(self, suggest: Suggest) -> Architecture:
        """Define-by-run: a stage's last ResNet block is not asked for when the stage's other
        ResNet blocks are removed (it must stay), so an Optuna trial's parameters are always
        the network's."""
        last = {keys[-1]: keys[:-1] for keys in _stage_resnets(self.parent_config).values()}
        params: dict[str, Any] = {}
        for k, values in self._choices.items():
            if k in last and all(params[o] == 0 for o in last[k]):
                params[k] = 1
            else:
                params[k] = suggest.suggest_categorical(k, values)
        return self._arch(params)

    def baseline(self, name: str) -> Architecture:
        """A BK-SDM removal (``bk-base``, ``bk-small``) at full width: the second ResNet and
        attention pair of every stage (of the down path's two and, in a diffusers U-Net, of
        the up path's three), and for ``bk-small`` the middle blocks."""
        p = self.parent_config
        if name not in BASELINES:
            raise InvalidArchitectureError(f"{self.name}: unknown baseline {name!r}; valid: {', '.join(BASELINES)}")
        if p.layers < 2:
            raise InvalidArchitectureError(f"{self.name}: {name} removes a block pair per stage; parent "
                                           f"{self.config['parent']!r} has one ResNet block per stage")
        params = {k: v[-1] for k, v in self._choices.items()}
        for u in _units(p):
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
        return p.with_(widths=tuple(a.get(f"s{s}.width", w) for s, w in enumerate(p.widths, 1)),
                       removed=tuple(u for u in _units(p) if a[u] == 0), image_size=self.config["image_size"])

    def count_params(self, subnet: Any) -> int:
        if _diffusers(subnet):
            from .diffusers import diffusers_param_count

            return diffusers_param_count(subnet)
        return param_count(subnet)

    def count_macs(self, subnet: Any) -> int:
        if _diffusers(subnet):
            from .diffusers import diffusers_macs

            return diffusers_macs(subnet)
        return macs(subnet)

    def graph(self, arch: Architecture):
        import networkx as nx

        cfg = self.subnet(arch)
        if _diffusers(cfg):
            return self._diffusers_graph(arch, cfg)
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

    def _diffusers_graph(self, arch: Architecture, cfg: Any):
        """An imported diffusers U-Net: its kept blocks as a chain in forward order."""
        import networkx as nx

        from .diffusers import diffusers_units

        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        g.add_node("input", op="input", channels=cfg.channels)
        chain = ["input", "conv_in"]
        g.add_node("conv_in", op="conv3x3", channels=cfg.widths[0])
        for u in diffusers_units(cfg):
            if cfg.keeps(u):
                g.add_node(u, op="attention" if ".a" in u else "resnet",
                           channels=cfg.widths[-1 if u.startswith("mid") else int(u[1:u.index(".")]) - 1])
                chain.append(u)
        chain.append("conv_out")
        g.add_node("conv_out", op="groupnorm_silu_conv3x3", channels=cfg.out_channels)
        nx.add_path(g, chain)
        return g

    # -- the network -----------------------------------------------------------------
    @classmethod
    def network_types(cls):
        from .model import UNet

        return UNet, UNetConfig

    @classmethod
    def build_network(cls, network: Mapping[str, Any]):
        if network.get("layout") != "diffusers":
            return super().build_network(network)
        from .diffusers import DiffusersUNet, DiffusersUNetConfig

        try:
            return DiffusersUNet(DiffusersUNetConfig.from_dict(dict(network)))
        except (TypeError, KeyError, ValueError) as e:
            raise InvalidArchitectureError(f"{cls.name}: not a network config ({type(e).__name__}: {e})") from None

    def network_class(self) -> type:
        if _diffusers(self.parent_config):
            from .diffusers import DiffusersUNet

            return DiffusersUNet
        from .model import UNet

        return UNet

    def run_subnet(self, parent: Any, arch: Architecture, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The parent computing as ``arch`` (weights sliced on the fly)."""
        return self.parent_module(parent, self.network_class()).run(x, t, self.subnet(arch))

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

            xt, t, eps = self._triples()
            if "denoise_loss" in keys and self.parent_config.channels != getattr(self.parent_config, "out_channels", 1):
                raise InvalidArchitectureError(f"{self.name}: denoise_loss needs a parent that predicts the noise "
                                               f"(as many output channels as input channels); use output_mse")
            with torch.no_grad():
                pred = self.materialize(arch)(xt, t)
                if "output_mse" in keys:
                    out["output_mse"] = float(((pred - self._parent_prediction()) ** 2).mean())
                if "denoise_loss" in keys:
                    out["denoise_loss"] = float(((pred - eps) ** 2).mean())
        return out

    def _parent_prediction(self):
        import torch

        p = self.parent()
        key = f"parent_prediction:{p.digest}"
        if key not in self._cache.data:
            xt, t, _ = self._triples()
            with torch.no_grad():
                self._cache.data[key] = p.module(xt, t)
        return self._cache.data[key]

    def _triples(self):
        """The fixed ``(x_t, t, eps)`` at the parent's size, repeated over its channels."""
        from .train import eval_triples

        xt, t, eps = eval_triples(self.parent_config.image_size)
        c = self.parent_config.channels
        return (xt.repeat(1, c, 1, 1), t, eps.repeat(1, c, 1, 1)) if c > 1 else (xt, t, eps)
