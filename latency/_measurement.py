"""``Measurement``: every raw timing of one profiling run plus the provenance to trust or reuse it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._errors import InvalidMeasurementError
from ._target import Target

__all__ = ["Measurement", "Kernel"]


@dataclass(frozen=True)
class Kernel:
    """One kernel the backend ran after its own fusion (an ORT node, an inductor kernel, an aten op)."""

    op: str  # e.g. "FusedConv", "Conv+Relu", "aten::conv2d", "cpp_fused_add_relu_0"
    count: int = 1
    time_ms: float | None = None  # total over ``count`` runs of one forward, when the runtime's profiler says

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "count": self.count, "time_ms": self.time_ms}


def _quantile(times: np.ndarray, q: float) -> float:
    return float(np.quantile(times, q)) if times.size else math.nan


@dataclass(frozen=True)
class Measurement:
    """One profiling run of one subject (an architecture or a kernel config) on one Target.

    ``times_ms`` holds every timed iteration of the kept round; ``median_ms``, ``p90_ms`` and
    ``spread`` are derived from it (never given). A failed run (export or compile error) is a
    Measurement too: ``error`` says why and ``times_ms`` is empty, so the job records it and
    goes on. Construction rejects negative, NaN or infinite times with the reason.
    """

    target: Target
    subject: str  # arch_id, or a kernel config id
    times_ms: tuple[float, ...] = ()
    warmup: int = 0
    repeats: int = 0
    rounds: int = 1  # measuring rounds run; more than one when the spread check re-measured
    threads: dict[str, int] = field(default_factory=dict)  # intra_op, inter_op as actually set
    versions: dict[str, str] = field(default_factory=dict)  # torch, onnxruntime, python, ...
    machine: str = ""
    timestamp: str = ""  # ISO 8601, UTC
    kernels: tuple[Kernel, ...] = ()
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # protocol details: clock, spread tolerance, ...

    def __post_init__(self) -> None:
        times = tuple(float(t) for t in self.times_ms)
        if not times and self.error is None:
            raise InvalidMeasurementError("times_ms: empty; a successful measurement needs at least one timing "
                                          "(a failed one sets error)")
        bad = [t for t in times if not math.isfinite(t)]
        if bad:
            raise InvalidMeasurementError(f"times_ms: got non-finite time {bad[0]!r}; every timing must be a "
                                          "finite number of milliseconds")
        neg = [t for t in times if t < 0]
        if neg:
            raise InvalidMeasurementError(f"times_ms: got negative time {neg[0]!r}; a duration cannot be negative "
                                          "(clock went backwards or the timer was misused)")
        for name, limit in (("subject", 200), ("machine", 300), ("timestamp", 64)):
            v = getattr(self, name)
            if not isinstance(v, str) or len(v) > limit:
                raise InvalidMeasurementError(f"{name}: got {v!r:.80}; valid: a string of at most {limit} characters")
        if self.error is not None and not isinstance(self.error, str):
            raise InvalidMeasurementError(f"error: got {self.error!r:.80}; valid: a string or null")
        for name in ("threads", "versions", "info"):
            v = getattr(self, name)
            if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
                raise InvalidMeasurementError(f"{name}: got {v!r:.80}; valid: an object with string keys")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in self.threads.values()):
            raise InvalidMeasurementError(f"threads: got {self.threads!r:.80}; valid: thread counts (integers)")
        if not all(isinstance(v, str) for v in self.versions.values()):
            raise InvalidMeasurementError(f"versions: got {self.versions!r:.80}; valid: library -> version string")
        try:
            import json as _json

            _json.dumps(self.info, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise InvalidMeasurementError(f"info: not finite JSON ({e})") from None
        for name in ("warmup", "repeats", "rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise InvalidMeasurementError(f"{name}: got {v!r}; valid: an integer >= 0")
        object.__setattr__(self, "times_ms", times)
        try:
            kernels = tuple(k if isinstance(k, Kernel) else Kernel(**k) for k in self.kernels)
        except TypeError as e:
            raise InvalidMeasurementError(f"kernels: {e}; valid: objects with op, count, time_ms") from None
        for k in kernels:
            if not isinstance(k.op, str) or not isinstance(k.count, int) or (
                    k.time_ms is not None and not (isinstance(k.time_ms, (int, float)) and math.isfinite(k.time_ms))):
                raise InvalidMeasurementError(f"kernels: got {k!r:.80}; valid: op (string), count (integer), "
                                              "time_ms (finite number or null)")
        object.__setattr__(self, "kernels", kernels)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def median_ms(self) -> float:
        return _quantile(np.asarray(self.times_ms), 0.5)

    @property
    def p90_ms(self) -> float:
        return _quantile(np.asarray(self.times_ms), 0.9)

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: the relative width of the timing distribution."""
        t = np.asarray(self.times_ms)
        if not t.size:
            return math.nan
        med = float(np.median(t))
        return (_quantile(t, 0.9) - _quantile(t, 0.1)) / med if med > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.to_dict(), "subject": self.subject, "times_ms": list(self.times_ms),
            "median_ms": None if not self.ok else self.median_ms, "p90_ms": None if not self.ok else self.p90_ms,
            "warmup": self.warmup, "repeats": self.repeats, "rounds": self.rounds, "threads": dict(self.threads),
            "versions": dict(self.versions), "machine": self.machine, "timestamp": self.timestamp,
            "kernels": [k.to_dict() for k in self.kernels], "error": self.error, "info": dict(self.info),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        d = dict(d)
        d.pop("median_ms", None)  # derived: recomputed from the raw timings, never trusted from input
        d.pop("p90_ms", None)
        known = {"target", "subject", "times_ms", "warmup", "repeats", "rounds", "threads", "versions", "machine",
                 "timestamp", "kernels", "error", "info"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidMeasurementError(f"{unknown[0]}: not a measurement field; valid: {', '.join(sorted(known))}")
        for key in ("target", "subject"):
            if key not in d:
                raise InvalidMeasurementError(f"{key}: missing; a measurement needs a target and a subject")
        target = d.pop("target")
        if not isinstance(target, (Target, dict)):
            raise InvalidMeasurementError(f"target: got {target!r:.80}; valid: an object with device, backend, ...")
        try:
            d["target"] = target if isinstance(target, Target) else Target.from_dict(target)
        except (TypeError, ValueError) as e:
            raise InvalidMeasurementError(f"target: {e}") from None
        times = d.get("times_ms") or ()
        # a string is iterable too: "12" would become [1.0, 2.0]
        if not isinstance(times, (list, tuple)) or any(isinstance(t, (str, bool)) for t in times):
            raise InvalidMeasurementError(f"times_ms: got {times!r:.80}; valid: a list of numbers")
        try:
            d["times_ms"] = tuple(float(t) for t in times)
        except (TypeError, ValueError) as e:
            raise InvalidMeasurementError(f"times_ms: got {times!r:.80}; valid: a list of numbers") from e
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> Measurement:
        return cls.from_dict(json.loads(s))
