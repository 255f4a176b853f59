"""The abstract bases every space implements: ``SearchSpace`` and ``TabularSpace``."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from ._architecture import Architecture
from ._errors import InvalidArchitectureError, InvalidConfigError, UnknownMetricError

if TYPE_CHECKING:  # heavy imports only for type checkers
    import networkx as nx
    import torch

__all__ = ["Suggest", "Choice", "MetricInfo", "ConfigOption", "SearchSpace", "TabularSpace", "metric_key",
           "PROFILED_DEVICES", "is_profiled"]

# Latency devices measured on this machine by the latency package's profilers (not read from a
# table): a space with networks offers them. Names match ``latency.BUILTIN_TARGETS``.
PROFILED_DEVICES = ("cpu-eager", "cpu-compile", "cpu-ort")


class Suggest(Protocol):
    """What ``SearchSpace.sample`` asks choices from; ``optuna.Trial`` satisfies it."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Choice:
    """One categorical choice of a space, as listed by ``nas spaces`` and the API."""

    name: str
    values: tuple[Any, ...]
    description: str = ""


@dataclass(frozen=True)
class MetricInfo:
    """A metric a space can report. ``devices`` is non-empty for per-device metrics (latency).

    ``of_function``: the metric depends only on the function the network computes (an
    accuracy), so predictors may read it from ``SearchSpace.canonical`` forms; False for a
    metric of the network as built (a latency or a size counts the parts that never reach
    the output too).
    """

    name: str
    unit: str
    direction: str  # the natural direction: "minimize" or "maximize"
    devices: tuple[str, ...] = ()
    description: str = ""
    of_function: bool = False


@dataclass(frozen=True)
class ConfigOption:
    """One configuration key of a space (``get_space(name, **config)``)."""

    name: str
    default: Any
    values: tuple[Any, ...] = ()
    description: str = ""


def metric_key(name: str, device: str | None = None) -> str:
    """The key of a metric in trial values: ``accuracy`` or ``latency_ms@raspi4``."""
    return f"{name}@{device}" if device else name


def is_profiled(key: str) -> bool:
    """True for a metric key measured by profiling on this machine (``latency_ms@cpu-ort``)."""
    return key.partition("@")[2] in PROFILED_DEVICES


@dataclass
class _Cache:
    data: dict[str, Any] = field(default_factory=dict)


class SearchSpace(abc.ABC):
    """A set of architectures with the operations the engine needs.

    Contract:

    * ``sample(suggest)`` is define-by-run: it asks every choice from ``suggest`` (an
      ``optuna.Trial`` or :class:`RandomSuggest`) and returns a valid :class:`Architecture`.
      The same answers give the same architecture.
    * ``from_params`` validates and raises :class:`InvalidArchitectureError` naming the bad key.
    * ``encode`` returns a float array of shape ``(len(archs), n_features)``; the width is
      fixed for a given space configuration.
    * ``lookup`` / ``metric_array`` report a metric as NaN (or leave the key out) when the
      architecture was not measured; callers must handle that.
    * Instances are immutable after construction and safe to share between threads; they
      are picklable (Ray ships them to workers).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    # declared capability: export format "hf" (a Hugging Face directory; the space implements write_hf)
    exports_hf: ClassVar[bool] = False

    def __init__(self, **config: Any) -> None:
        options = self.config_options()
        unknown = sorted(set(config) - set(options))
        if unknown:
            raise InvalidConfigError(f"space.{unknown[0]}", config[unknown[0]],
                                     f"config keys of {self.name}: {', '.join(options) or '(none)'}")
        resolved = {}
        for key, opt in options.items():
            value = config.get(key, opt.default)
            if opt.values and value not in opt.values:
                raise InvalidConfigError(f"space.{key}", value, ", ".join(map(str, opt.values)))
            resolved[key] = value
        self.config: Mapping[str, Any] = resolved
        self._cache = _Cache()

    # -- description -----------------------------------------------------------------
    @classmethod
    def config_options(cls) -> dict[str, ConfigOption]:
        return {}

    @abc.abstractmethod
    def choices(self) -> list[Choice]:
        """The choices of the space (for listings and schemas)."""

    @abc.abstractmethod
    def metrics(self) -> dict[str, MetricInfo]:
        """The metrics this space can report, by name."""

    def resolve_metric(self, name: str, device: str | None = None, *, field: str = "objective") -> str:
        """Validate ``(name, device)`` and return its key; errors list what is valid."""
        infos = self.metrics()
        if name not in infos:
            raise UnknownMetricError(f"{field}.name", name, ", ".join(infos))
        info = infos[name]
        if info.devices:
            if device is None:
                if len(info.devices) == 1:
                    return metric_key(name, info.devices[0])
                raise UnknownMetricError(f"{field}.device", None,
                                         f"{name} needs a device, one of: {', '.join(info.devices)}")
            if device not in info.devices:
                raise UnknownMetricError(f"{field}.device", device, ", ".join(info.devices))
            return metric_key(name, device)
        if device is not None:
            raise UnknownMetricError(f"{field}.device", device, f"none ({name} is not per-device)")
        return name

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "config": dict(self.config),
            "config_options": {k: {"default": o.default, "values": list(o.values), "description": o.description}
                               for k, o in self.config_options().items()},
            "choices": [{"name": c.name, "values": list(c.values), "description": c.description}
                        for c in self.choices()],
            "metrics": {k: {"unit": m.unit, "direction": m.direction, "devices": list(m.devices),
                            "description": m.description} for k, m in self.metrics().items()},
        }

    # -- architectures ---------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, suggest: Suggest) -> Architecture:
        """Define-by-run sampling; ``suggest`` may be an ``optuna.Trial``."""

    @abc.abstractmethod
    def from_params(self, params: Mapping[str, Any]) -> Architecture:
        """The architecture with these params; raises ``InvalidArchitectureError``."""

    def validate(self, arch: Architecture) -> None:
        if arch.space != self.name:
            raise InvalidArchitectureError(f"architecture belongs to space {arch.space!r}, not {self.name!r}")
        if arch.space_version != self.version:
            raise InvalidArchitectureError(
                f"architecture is of {self.name} version {arch.space_version!r}; this space is version {self.version!r}")
        self.from_params(arch.params)

    def _arch(self, params: Mapping[str, Any]) -> Architecture:
        return Architecture(self.name, self.version, params)

    def canonical(self, arch: Architecture) -> Architecture:
        """An architecture of this space that computes the same function as ``arch``, with what
        cannot reach the output taken out (in ``nb201``: an edge on no input-output path of live
        edges becomes ``none``). The identity by default.

        Accuracy predictors read architectures through it (``predictors.weak_labels.features``):
        cells that differ only in dead edges train to the same network, and columns for those
        edges are noise to a model fitted on a hundred labels. Latency models do not: a dead
        edge is still computed by the network as built.
        """
        return arch

    @abc.abstractmethod
    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Fixed-length float features, one row per architecture."""

    @abc.abstractmethod
    def graph(self, arch: Architecture) -> nx.DiGraph:
        """The operator graph of an architecture."""

    def materialize(self, arch: Architecture, parent: Any = None) -> torch.nn.Module:
        raise NotImplementedError(f"space {self.name!r} has no trainable network to materialise")

    def example_inputs(self, arch: Architecture, batch: int = 1) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError(f"space {self.name!r} has no network inputs")

    def profiling_subjects(self, arch: Architecture, keys: Sequence[str]
                           ) -> dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]:
        """Per profiled metric key (``latency_ms@cpu-ort``), the ``(module, inputs)`` whose call
        it times: by default the materialised network on ``example_inputs``, built once for
        every key. A space with several profiled metrics gives each its own (``llm-subnet``: a
        prefill for ``latency_ms``, one decoding step after a filled KV cache for ``decode_ms``)."""
        subject = (self.materialize(arch), self.example_inputs(arch))
        return dict.fromkeys(keys, subject)

    def evaluate(self, arch: Architecture, keys: Sequence[str]) -> dict[str, float]:
        """Measure ``keys`` (non-profiled metrics) of ``arch`` itself, e.g. the top-1 of its
        inherited-weight network. Spaces with a trained parent implement it; tabular spaces
        read their table instead (``lookup``)."""
        raise NotImplementedError(f"space {self.name!r} has no evaluator of its own")

    def provenance(self) -> dict[str, Any]:
        """What the metrics depend on beyond the architecture (a parent's checkpoint digest):
        recorded with a job, checked again on export."""
        return {}

    def final_metrics(self) -> tuple[str, ...]:
        """Metrics the engine measures once a job has finished, on its Pareto front only (at
        most ``FINAL_REPORT_LIMIT`` architectures), and records in the job's log: numbers a
        user wants about the result but too costly to measure for every candidate (e.g. the
        held-out perplexity of an LLM subnet before and after reformation). None by default."""
        return ()

    def network_config(self, arch: Architecture) -> dict[str, Any]:
        """The JSON that rebuilds ``arch``'s dense network without the parent
        (``build_network``): what an export writes beside the weights. Spaces whose networks
        have trained weights implement it; the others cannot export weights."""
        raise NotImplementedError(f"space {self.name!r} has no trained weights to export")

    @classmethod
    def build_network(cls, network: Mapping[str, Any]) -> torch.nn.Module:
        """The dense network of ``network_config``, freshly initialised (load weights into it)."""
        raise NotImplementedError(f"space {cls.name!r} cannot rebuild networks from a config")

    @classmethod
    def has_weights(cls) -> bool:
        return cls.network_config is not SearchSpace.network_config

    @classmethod
    def has_evaluator(cls) -> bool:
        return cls.evaluate is not SearchSpace.evaluate

    def __reduce__(self):  # pickle by (class, config): tables reload lazily in the worker
        return (_rebuild, (type(self), dict(self.config)))

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({cfg})"


def _rebuild(cls: type[SearchSpace], config: dict[str, Any]) -> SearchSpace:
    # through the registry's instance cache, so a worker that unpickles the same space for
    # every trial loads its tables once per process, not once per trial
    from ._registry import _REGISTRY, get_space

    if _REGISTRY.get(cls.name) is cls:
        return get_space(cls.name, **config)
    return cls(**config)


class TabularSpace(SearchSpace):
    """A space whose every architecture was measured externally and is listed in a table.

    Contract (beyond :class:`SearchSpace`): ``enumerate()`` lists every architecture in the
    table's own order; ``index_of(arch)`` is its position; ``metric_array(key)`` is the
    column of a metric in that order, NaN where the table has no measurement; ``lookup``
    reads one row (keys with NaN are left out: "not measured").
    """

    @abc.abstractmethod
    def enumerate(self) -> list[Architecture]: ...

    @abc.abstractmethod
    def index_of(self, arch: Architecture) -> int: ...

    @abc.abstractmethod
    def metric_array(self, key: str) -> np.ndarray: ...

    def metric_keys(self) -> list[str]:
        """The keys the table holds (profiled keys are measured per job, never in a table)."""
        keys = []
        for name, info in self.metrics().items():
            keys += [metric_key(name, d) for d in info.devices if d not in PROFILED_DEVICES] if info.devices else [name]
        return keys

    def lookup(self, arch: Architecture, keys: Iterable[str] | None = None) -> dict[str, float]:
        i = self.index_of(arch)
        out = {}
        for key in (self.metric_keys() if keys is None else keys):
            value = float(self.metric_array(key)[i])
            if np.isfinite(value):
                out[key] = value
        return out

    def encoded_table(self) -> np.ndarray:
        """``encode(enumerate())``, computed once: what screening over the whole table uses."""
        if "encoded" not in self._cache.data:
            self._cache.data["encoded"] = self.encode(self.enumerate())
        return self._cache.data["encoded"]

    def canonical_indices(self) -> np.ndarray:
        """For each architecture (``enumerate`` order), the index of its ``canonical`` form,
        computed once (a canonical form is itself in the table)."""
        if "canonical" not in self._cache.data:
            self._cache.data["canonical"] = np.array([self.index_of(self.canonical(a)) for a in self.enumerate()])
        return self._cache.data["canonical"]
