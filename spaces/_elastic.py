"""``ElasticSpace``: the shared part of the spaces whose architectures are subnets of a
trained parent (``vit-elastic``, ``sr-adaptive``, ``unet-blocks``).

Contract for subclasses:

* ``parents``: the names of the parents the space accepts (``spaces._parents``), the first
  is the default; ``extra_options()`` adds config options beyond ``parent`` and ``seed``.
* ``build_choices()`` returns every choice as an ascending tuple of numbers (the slimming and
  knapsack drivers lower them one step at a time), in sampling order.
* ``check(params)`` raises :class:`InvalidArchitectureError` for combinations the choices
  alone allow but the network cannot take (e.g. every block of a stage removed). A space with
  such rules also overrides ``sample`` so that it never asks for a value it would then
  overrule (an Optuna trial's parameters must be the network's), and ``repair`` for the
  drivers' plans.
* ``subnet(arch)`` returns the dense network's config (a frozen dataclass with ``to_dict``).
* ``network_types()`` returns ``(dense network class, config class)``, imported lazily: the
  network is built as ``cls(config_cls.from_dict(d))``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ._architecture import Architecture
from ._base import PROFILED_DEVICES, Choice, ConfigOption, MetricInfo, SearchSpace, Suggest
from ._errors import InvalidArchitectureError, InvalidConfigError
from ._parents import imported_parents

__all__ = ["ElasticSpace", "aligned", "grid"]


def aligned(x: float, align: int) -> int:
    """``x`` rounded up to a multiple of ``align`` (at least ``align``)."""
    return max(align, int(-(-x // align)) * align)


def grid(lo: int, hi: int, align: int) -> tuple[int, ...]:
    """The multiples of ``align`` from ``lo`` (rounded up) to ``hi``."""
    return tuple(range(-(-lo // align) * align, hi + 1, align))


class ElasticSpace(SearchSpace):
    parents: ClassVar[tuple[str, ...]]
    # checkpoint format -> "module:function" converting a foreign checkpoint into (config, parent module)
    importers: ClassVar[dict[str, str]] = {}
    # metrics computed from the architecture alone (no measurement): strategies screen constraints on them
    static_metrics: ClassVar[tuple[str, ...]] = ("params", "mmacs")
    descriptions: ClassVar[dict[str, str]] = {}  # by the choice's suffix after the last "."

    @classmethod
    def extra_options(cls) -> dict[str, ConfigOption]:
        return {}

    @classmethod
    def config_options(cls) -> dict[str, ConfigOption]:
        return {
            "parent": ConfigOption("parent", cls.parents[0], cls.parents + tuple(imported_parents(cls.name)),
                                   "the trained parent (`nas parents train NAME`; trained on first use), "
                                   "or one imported with `nas parents import`"),
            "seed": ConfigOption("seed", 0, (), "the parent's training seed (an integer >= 0)"),
            **cls.extra_options(),
        }

    def __init__(self, **config: Any) -> None:
        # the CLI passes KEY=VALUE strings: "3" for an integer option, "false" for a boolean one
        for key, opt in self.config_options().items():
            v = config.get(key)
            if isinstance(v, str) and isinstance(opt.default, bool) and v.lower() in ("true", "false"):
                config[key] = v.lower() == "true"
            elif isinstance(v, str) and isinstance(opt.default, int) and not isinstance(opt.default, bool) \
                    and v.lstrip("-").isdigit():
                config[key] = int(v)
        super().__init__(**config)
        seed = self.config["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise InvalidConfigError("space.seed", seed, "an integer >= 0")
        from ._parents import get_parent

        spec = get_parent(self.config["parent"])
        if "imported" in spec.extra and seed != 0:
            raise InvalidConfigError("space.seed", seed, f"0 (parent {spec.name!r} was imported, not trained per seed)")
        # the config of this space's parent network (checks, subnets and sampling read it per architecture)
        self.parent_config: Any = spec.extra["config"]
        self._choices = self.build_choices()

    @abc.abstractmethod
    def build_choices(self) -> dict[str, tuple[int, ...]]: ...

    def check(self, params: Mapping[str, Any]) -> None:
        """Cross-choice rules; the default has none."""

    @abc.abstractmethod
    def subnet(self, arch: Architecture) -> Any: ...

    def describe_choice(self, key: str) -> str:
        unit, _, kind = key.rpartition(".")
        return self.descriptions.get(kind, "").format(unit=unit)

    def choices(self) -> list[Choice]:
        return [Choice(k, v, self.describe_choice(k)) for k, v in self._choices.items()]

    def sample(self, suggest: Suggest) -> Architecture:
        params = {k: suggest.suggest_categorical(k, v) for k, v in self._choices.items()}
        self.check(params)  # a space with rules across choices samples define-by-run instead
        return self._arch(params)

    def repair(self, params: dict[str, Any]) -> dict[str, Any]:
        """A valid architecture close to ``params`` (a driver's plan may break a ``check``
        rule); the default changes nothing."""
        return params

    def from_params(self, params: Mapping[str, Any]) -> Architecture:
        extra = sorted(set(params) - set(self._choices))
        if extra:
            raise InvalidArchitectureError(f"{self.name}: unknown key {extra[0]!r}; keys are {', '.join(self._choices)}")
        for k, values in self._choices.items():
            if k not in params:
                raise InvalidArchitectureError(f"{self.name}: missing key {k!r}; valid values: {list(values)}")
            v = params[k]
            if isinstance(v, bool) or v not in values:
                raise InvalidArchitectureError(f"{self.name}: {k} is {v!r}; valid: {', '.join(map(str, values))}"
                                               + self.value_hint(k, v))
        self.check(params)
        return self._arch({k: params[k] for k in self._choices})

    def value_hint(self, key: str, value: Any) -> str:
        """Extra words for an invalid value (e.g. the alignment it misses)."""
        return ""

    @abc.abstractmethod
    def count_params(self, subnet: Any) -> int: ...

    @abc.abstractmethod
    def count_macs(self, subnet: Any) -> int:
        """Multiply-accumulates of one input of the space's configured size."""

    def size_metrics(self) -> dict[str, MetricInfo]:
        """``params``, ``mmacs`` and the profiled ``latency_ms``: every model space has them."""
        side = self.config.get("image_size")
        per = f"one {side}px input" if side else "one input"
        return {
            "params": MetricInfo("params", "count", "minimize", (), "parameters of the dense subnet"),
            "mmacs": MetricInfo("mmacs", "M", "minimize", (), f"multiply-accumulates for {per}, millions"),
            "latency_ms": MetricInfo("latency_ms", "ms", "minimize", PROFILED_DEVICES,
                                     "latency of the dense subnet, profiled on this machine during the job"),
        }

    def size_features(self, subnet: Any) -> tuple[float, ...]:
        """Sizes of a dense network: ``encode`` adds them relative to the largest subnet's."""
        return float(self.count_params(subnet)), float(self.count_macs(subnet))

    def evaluate(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        """``params`` and ``mmacs`` from the config; the quality metrics from ``measure``."""
        cfg = self.subnet(arch)
        out: dict[str, float] = {}
        if "params" in keys:
            out["params"] = float(self.count_params(cfg))
        if "mmacs" in keys:
            out["mmacs"] = self.count_macs(cfg) / 1e6
        rest = [k for k in keys if k not in out]
        if rest:
            out.update(self.measure(arch, rest))
        return out

    @abc.abstractmethod
    def measure(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        """The quality metrics in ``keys`` of the inherited-weight subnet."""

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Each choice over its largest value, then the size features relative to the largest subnet."""
        keys = list(self._choices)
        maxima = np.array([max(v[-1], 1) for v in self._choices.values()], dtype=np.float64)
        big = np.array(self.size_features(self.subnet(self.largest())), dtype=np.float64)
        out = np.zeros((len(archs), len(keys) + len(big)), dtype=np.float32)
        for r, a in enumerate(archs):
            out[r, :len(keys)] = np.array([a.params[k] for k in keys], dtype=np.float64) / maxima
            out[r, len(keys):] = np.array(self.size_features(self.subnet(a)), dtype=np.float64) / big
        return out

    def largest(self) -> Architecture:
        return self.from_params({k: v[-1] for k, v in self._choices.items()})

    def smallest(self) -> Architecture:
        return self.from_params(self.repair({k: v[0] for k, v in self._choices.items()}))

    # -- the parent ------------------------------------------------------------------
    def parent(self, *, train: bool = True, progress=None):
        """The trained parent (``spaces.TrainedParent``), trained now if it is not on disk."""
        from ._parents import load_parent

        return load_parent(self.config["parent"], self.config["seed"], train=train, progress=progress)

    def parent_module(self, parent: Any, cls: type) -> Any:
        """``parent`` (a TrainedParent, a module, or None for this space's own) as a module of
        ``cls``; a module of another space is refused with the reason."""
        if parent is None:
            parent = self.parent().module
        parent = getattr(parent, "module", parent)
        if not isinstance(parent, cls):
            raise InvalidArchitectureError(f"{self.name}: the parent must be a {cls.__name__} "
                                           f"(parents: {', '.join(self.parents)}); got {type(parent).__name__}")
        return parent

    def provenance(self) -> dict[str, Any]:
        p = self.parent()
        return {"parent": p.name, "seed": p.seed, "parent_digest": p.digest}

    def network_config(self, arch: Architecture) -> dict[str, Any]:
        return self.subnet(arch).to_dict()

    @classmethod
    @abc.abstractmethod
    def network_types(cls) -> tuple[type, type]: ...

    def network_class(self) -> type:
        """The class of this space's networks (a space whose parents differ in layout picks by its parent)."""
        return self.network_types()[0]

    @classmethod
    def build_network(cls, network: Mapping[str, Any]):
        net_cls, cfg_cls = cls.network_types()
        try:
            return net_cls(cfg_cls.from_dict(dict(network)))
        except (TypeError, KeyError, ValueError) as e:
            raise InvalidArchitectureError(f"{cls.name}: not a network config ({type(e).__name__}: {e})") from None

    def materialize(self, arch: Architecture, parent: Any = None) -> Any:
        """The dense network of ``arch`` with its weights cut from ``parent`` (default: this
        space's trained parent) as prefix slices of the tensors of the same names
        (``spaces._slicing``), in eval mode; its output equals ``run_subnet(parent, arch, ...)``."""
        from ._slicing import sliced_state_dict

        net_cls = self.network_class()
        parent = self.parent_module(parent, net_cls)
        if parent.config != self.parent_config:  # a parent of another size would slice silently
            raise InvalidArchitectureError(f"{self.name}: the parent does not fit {self.config['parent']!r}: it is "
                                           f"{parent.config}, {self.config['parent']!r} is {self.parent_config}")
        net = net_cls(self.subnet(arch))
        try:
            net.load_state_dict(sliced_state_dict(parent, net))
        except ValueError as e:
            raise InvalidArchitectureError(f"{self.name}: the parent does not fit {self.config['parent']!r}: {e}") from None
        return net.eval()
