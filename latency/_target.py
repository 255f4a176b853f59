"""``Target``: device + backend + threads + batch + input shape; a latency model is valid for one Target only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

__all__ = ["Target"]


@dataclass(frozen=True)
class Target:
    device: str
    backend: str = "table"  # "table" = an externally measured benchmark table
    threads: int | None = None
    batch: int = 1
    shape: tuple[int, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, s: str) -> Target:
        d = json.loads(s)
        d["shape"] = tuple(d.get("shape", ()))
        return cls(**d)
