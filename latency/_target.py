"""``Target``: device + backend + threads + batch + input shape; a latency model is valid for one Target only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ._errors import InvalidTargetError, UnknownBackendError

__all__ = ["Target", "BACKENDS", "BUILTIN_TARGETS", "get_target"]

# "table" = an externally measured benchmark table (HELP, nn-Meter, HW-GPT-Bench): no profiler
BACKENDS = ("eager", "compile", "onnxruntime", "table")


@dataclass(frozen=True)
class Target:
    """Where a latency is measured. ``shape == ()`` means "the space's own example inputs".

    ``name`` is the short handle used in metric keys (``latency_ms@cpu-ort``); it defaults
    to ``device-backend``. Two Targets with different threads, batch or shape are different
    targets even on the same device: a latency model never mixes them.
    """

    device: str
    backend: str = "table"
    threads: int | None = None
    batch: int = 1
    shape: tuple[int, ...] = field(default=())
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not self.device.strip():
            raise InvalidTargetError("target.device", self.device, "a non-empty device name")
        if self.backend not in BACKENDS:
            raise UnknownBackendError(self.backend, list(BACKENDS))
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise InvalidTargetError("target.threads", self.threads, "an integer >= 1, or null for the default")
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise InvalidTargetError("target.batch", self.batch, "an integer >= 1")
        shape = tuple(self.shape)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise InvalidTargetError("target.shape", list(shape), "positive integers (without the batch), or []")
        object.__setattr__(self, "shape", shape)
        if not self.name:
            object.__setattr__(self, "name", f"{self.device}-{self.backend}")

    @property
    def key(self) -> str:
        """Everything that makes two targets different, as one string (the SQL identity)."""
        threads = self.threads if self.threads is not None else "default"
        shape = "x".join(map(str, self.shape)) or "space"
        return f"{self.device}/{self.backend}/t{threads}/b{self.batch}/{shape}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        unknown = sorted(set(d) - {"device", "backend", "threads", "batch", "shape", "name"})
        if unknown:
            raise InvalidTargetError(f"target.{unknown[0]}", d[unknown[0]],
                                     "keys device, backend, threads, batch, shape, name")
        if "device" not in d:
            raise InvalidTargetError("target.device", None, "a non-empty device name")
        d = dict(d)
        shape = d.get("shape") or ()
        if not isinstance(shape, (list, tuple)):
            raise InvalidTargetError("target.shape", shape, "a list of positive integers (without the batch), or []")
        d["shape"] = tuple(shape)
        for key in ("device", "backend", "name"):
            if key in d and not isinstance(d[key], str):
                raise InvalidTargetError(f"target.{key}", d[key], "a string")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> Target:
        return cls.from_dict(json.loads(s))


# This machine's CPU, one thread (a shared 2-core box: one thread is what stays reproducible),
# batch 1, the space's own input shape.
BUILTIN_TARGETS = {
    "cpu-eager": Target("cpu", "eager", threads=1, name="cpu-eager"),
    "cpu-compile": Target("cpu", "compile", threads=1, name="cpu-compile"),
    "cpu-ort": Target("cpu", "onnxruntime", threads=1, name="cpu-ort"),
}


def get_target(name: str) -> Target:
    """A built-in target by name (``cpu-eager``, ``cpu-compile``, ``cpu-ort``)."""
    try:
        return BUILTIN_TARGETS[name]
    except KeyError:
        raise InvalidTargetError("target", name, ", ".join(BUILTIN_TARGETS)) from None
