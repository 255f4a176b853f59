"""``Architecture``: the frozen value that names one point of a search space."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = ["Architecture", "canonical_json"]


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    # numpy scalars and the like: keep JSON scalars only, so the hash is stable
    if hasattr(value, "item"):
        return _freeze(value.item())
    raise TypeError(f"architecture params must be JSON scalars, lists or dicts; got {type(value).__name__}")


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings."""
    return json.dumps(_thaw(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, eq=False)
class Architecture:
    """One architecture of a space: immutable, hashable, equal by content.

    ``arch_id`` is a content hash of ``(space, space_version, params)``: the same choices
    always give the same id, on every machine, so ids are safe as database keys.
    """

    space: str
    space_version: str
    params: Mapping[str, Any]
    arch_id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _freeze(dict(self.params)))
        digest = hashlib.blake2b(self.canonical().encode(), digest_size=10).hexdigest()
        object.__setattr__(self, "arch_id", digest)

    def canonical(self) -> str:
        return canonical_json({"space": self.space, "space_version": self.space_version, "params": self.params})

    def params_dict(self) -> dict[str, Any]:
        """A mutable, JSON-ready copy of the params."""
        return _thaw(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "space_version": self.space_version,
                "params": self.params_dict(), "arch_id": self.arch_id}

    def to_json(self) -> str:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Architecture:
        arch = cls(d["space"], d["space_version"], d["params"])
        if "arch_id" in d and d["arch_id"] != arch.arch_id:
            from ._errors import InvalidArchitectureError

            raise InvalidArchitectureError(
                f"arch_id {d['arch_id']!r} does not match the content hash {arch.arch_id!r} of its params")
        return arch

    @classmethod
    def from_json(cls, s: str) -> Architecture:
        return cls.from_dict(json.loads(s))

    def __reduce__(self):  # params is a read-only mapping proxy, which pickle cannot handle itself
        return (Architecture, (self.space, self.space_version, self.params_dict()))

    def __deepcopy__(self, memo: dict) -> Architecture:
        return self  # immutable

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Architecture) and other.arch_id == self.arch_id

    def __hash__(self) -> int:
        return hash(self.arch_id)

    def __repr__(self) -> str:
        return f"Architecture({self.space}@{self.space_version}, {self.arch_id}, {canonical_json(self.params)})"
