"""Search strategies: one registry, one factory (``get_strategy``)."""

from __future__ import annotations

from typing import Any

from ..errors import SpecError
from ._base import Proposal, SearchContext, Strategy
from ._evolution import EvolutionStrategy
from ._optuna import NSGA2Strategy, OptunaStrategy, RandomStrategy, TPEStrategy
from ._predictor_guided import PredictorGuidedStrategy
from ._slimming import KnapsackStrategy, SlimmingStrategy

__all__ = ["Strategy", "Proposal", "SearchContext", "get_strategy", "strategy_class", "list_strategies", "register_strategy",
           "OptunaStrategy", "RandomStrategy", "TPEStrategy", "NSGA2Strategy", "PredictorGuidedStrategy",
           "SlimmingStrategy", "KnapsackStrategy", "EvolutionStrategy"]

_REGISTRY: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    _REGISTRY[cls.name] = cls
    return cls


for _cls in (RandomStrategy, TPEStrategy, NSGA2Strategy, PredictorGuidedStrategy, SlimmingStrategy, KnapsackStrategy,
             EvolutionStrategy):
    register_strategy(_cls)


def list_strategies() -> list[str]:
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[Strategy]:
    if name not in _REGISTRY:
        raise SpecError("strategy.name", name, ", ".join(list_strategies()))
    return _REGISTRY[name]


def get_strategy(name: str, **params: Any) -> Strategy:
    if name not in _REGISTRY:
        raise SpecError("strategy.name", name, ", ".join(list_strategies()))
    return _REGISTRY[name](**params)
