"""The one registry of search spaces: ``register_space``, ``get_space``, ``list_spaces``."""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from ._base import SearchSpace
from ._errors import UnknownSpaceError

__all__ = ["register_space", "get_space", "list_spaces", "space_class"]

_REGISTRY: dict[str, type[SearchSpace]] = {}
# built-in spaces are registered on first use, so `import spaces` stays cheap
_BUILTIN_MODULES = ("spaces.nb201", "spaces.hwgpt", "spaces.vit", "spaces.sr", "spaces.unet", "spaces.llm")
_loaded = False

S = TypeVar("S", bound=type[SearchSpace])


def register_space(cls: S) -> S:
    """Class decorator: make a space available to ``get_space(cls.name)``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"space {cls.name!r} is already registered by {_REGISTRY[cls.name].__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for mod in _BUILTIN_MODULES:
            importlib.import_module(mod)
        _loaded = True


def list_spaces() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def space_class(name: str) -> type[SearchSpace]:
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownSpaceError(name, sorted(_REGISTRY)) from None


_INSTANCES: dict[tuple, SearchSpace] = {}


def get_space(name: str, **config: Any) -> SearchSpace:
    """The space ``name`` with ``config``; instances are shared (they are immutable)."""
    cls = space_class(name)
    key = (name, tuple(sorted((k, repr(v)) for k, v in config.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = cls(**config)
    return _INSTANCES[key]
