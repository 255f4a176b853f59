"""Predictors: scikit-learn estimators on ``space.encode(archs)``; a higher prediction is better.

``get_predictor(name, **params)`` is the one factory; ``list_predictors()`` the registry.
"""

from __future__ import annotations

from typing import Any, Callable

from ._errors import PredictorError, UnknownPredictorError

__all__ = ["get_predictor", "list_predictors", "register_predictor", "PredictorError", "UnknownPredictorError"]

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_predictor(name: str, factory: Callable[..., Any]) -> None:
    _REGISTRY[name] = factory


def list_predictors() -> list[str]:
    return sorted(_REGISTRY)


def get_predictor(name: str, **params: Any):
    """A fresh, unfitted estimator; unknown names or parameters raise ``ValueError``."""
    if name not in _REGISTRY:
        raise UnknownPredictorError(name, list_predictors())
    factory = _REGISTRY[name]
    valid = factory._get_param_names() if hasattr(factory, "_get_param_names") else None
    if valid is not None:
        bad = sorted(set(params) - set(valid))
        if bad:
            raise ValueError(f"{bad[0]}: not a parameter of predictor {name!r}; valid: {', '.join(valid)}")
    return factory(**params)


def _register_builtins() -> None:
    from ._forest import ForestPredictor, GBDTPredictor, RidgeForestPredictor

    from ._rank import RankMLP, RankNetMLP
    from ._zero_cost_predictor import ZeroCostPredictor

    register_predictor("rf", ForestPredictor)
    register_predictor("ridge-rf", RidgeForestPredictor)
    register_predictor("gbdt", GBDTPredictor)
    register_predictor("lambdarank", RankMLP)
    register_predictor("ranknet", RankNetMLP)
    register_predictor("zero-cost", ZeroCostPredictor)


_register_builtins()
