"""The one registry of latency models: ``get_latency_model(name, target=None, **params)``."""

from __future__ import annotations

from typing import Any, Callable

from ._errors import UnknownLatencyModelError

__all__ = ["get_latency_model", "list_latency_models", "register_latency_model"]

_REGISTRY: dict[str, Callable[..., Any]] = {}
_BUILTINS = {  # name -> "module:class", imported on first use (keeps `import latency` light)
    "transfer": "latency._transfer:TransferLatencyModel",
    "kernel-sum": "latency.kernel_model:KernelSumModel",
    "roofline": "latency.kernel_model:RooflineModel",
    "flops-linear": "latency.kernel_model:FlopsLinearModel",
}


def register_latency_model(name: str, factory: Callable[..., Any]) -> None:
    _REGISTRY[name] = factory


def list_latency_models() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTINS))


def _factory(name: str) -> Callable[..., Any]:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTINS:
        import importlib

        module, _, cls = _BUILTINS[name].partition(":")
        _REGISTRY[name] = getattr(importlib.import_module(module), cls)
        return _REGISTRY[name]
    raise UnknownLatencyModelError(name, list_latency_models())


def get_latency_model(name: str, target: Any = None, **params: Any):
    """A fresh, unfitted scikit-learn regressor predicting milliseconds.

    ``target`` is passed to models that are valid for one Target (``kernel-sum``,
    ``roofline``); unknown names or parameters raise ``ValueError`` naming them.
    """
    factory = _factory(name)
    valid = factory._get_param_names() if hasattr(factory, "_get_param_names") else None
    if target is not None and (valid is None or "target" in valid):  # models for any Target ignore it
        params = {"target": target, **params}
    if valid is not None:
        bad = sorted(set(params) - set(valid))
        if bad:
            raise ValueError(f"{bad[0]}: not a parameter of latency model {name!r}; valid: {', '.join(valid)}")
    return factory(**params)
