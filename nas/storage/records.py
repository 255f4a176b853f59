"""Frozen value types that cross the storage boundary (JSON round trip tested)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

__all__ = ["JobRecord", "TrialRecord", "RoundRecord", "JOB_STATES", "TRIAL_STATES"]

JOB_STATES = ("queued", "running", "completed", "failed", "cancelled")
TRIAL_STATES = ("complete", "fail", "unmeasured")


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() if d else None


@dataclass(frozen=True)
class TrialRecord:
    """One evaluated (or failed) architecture of a job.

    ``values`` holds the objectives by key (``latency_ms@raspi4``); ``constraints`` follows
    Optuna's convention (one number per constraint, <= 0 means satisfied).
    """

    job_id: str
    number: int
    round: int
    arch: dict[str, Any]  # Architecture.to_dict()
    state: str
    values: dict[str, float] | None = None
    metrics: dict[str, float] | None = None
    constraints: list[float] | None = None
    feasible: bool = True
    source: dict[str, Any] | None = None
    sampler: dict[str, Any] | None = None
    error: str | None = None
    duration_s: float | None = None

    @property
    def arch_id(self) -> str:
        return self.arch["arch_id"]

    @property
    def counts_as_evaluation(self) -> bool:
        """A real measurement was spent on it: not re-used from an earlier trial, not unmeasured."""
        return self.state != "unmeasured" and not (self.source or {}).get("cached", False)

    def to_dict(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialRecord:
        return cls(**d)


@dataclass(frozen=True)
class RoundRecord:
    job_id: str
    round: int
    n_trials: int
    n_evaluations: int
    n_screened: int
    hypervolume: float | None
    best: dict[str, float] | None
    seconds: float
    info: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _shallow(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoundRecord:
        return cls(**d)


@dataclass(frozen=True)
class JobRecord:
    id: str
    name: str | None
    space: str
    strategy: str
    spec: dict[str, Any]
    state: str
    seed: int
    budget: int
    n_trials: int
    n_evaluations: int
    rounds: int
    hypervolume: float | None
    owner: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    cancel_requested: bool = False
    provenance: dict[str, Any] | None = None
    strategy_state: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        d = _shallow(self)
        d.pop("strategy_state")
        for k in ("created_at", "updated_at", "started_at", "finished_at", "heartbeat_at"):
            d[k] = _iso(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobRecord:
        d = dict(d)
        for k in ("created_at", "updated_at", "started_at", "finished_at", "heartbeat_at"):
            if d.get(k) is not None:
                d[k] = datetime.fromisoformat(d[k])
        return cls(**d)


def _shallow(record: Any) -> dict[str, Any]:
    """The record's fields as a dict, sharing its values: ``asdict``'s deep copy of every nested
    spec and metric dict was most of the cost of rendering a polled job list."""
    return {f.name: getattr(record, f.name) for f in fields(record)}
