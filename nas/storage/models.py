"""SQLAlchemy 2.0 models. JSON columns use the portable ``JSON`` type (no PostgreSQL-only types).

The schema is owned by the Alembic migrations in ``migrations/``; these models must match them
(``tests/test_storage.py`` checks that ``alembic check`` finds nothing to do).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, false, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Job", "ArchitectureRow", "Trial", "JobRound", "JobLog", "TargetRow", "MeasurementRow", "LatencyModelRow",
           "ApiToken"]


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    space: Mapped[str] = mapped_column(String(64))
    strategy: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|completed|failed|cancelled
    seed: Mapped[int] = mapped_column(Integer)
    budget: Mapped[int] = mapped_column(Integer)
    n_trials: Mapped[int] = mapped_column(Integer, default=0)
    n_evaluations: Mapped[int] = mapped_column(Integer, default=0)
    rounds: Mapped[int] = mapped_column(Integer, default=0)
    hypervolume: Mapped[float | None] = mapped_column(Float)
    owner: Mapped[str | None] = mapped_column(String(200))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the strategy's state (JSON of its own data, Strategy.get_state): loaded only by the job's runner,
    # never by the listings and polls of the API
    strategy_state: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    error: Mapped[str | None] = mapped_column(Text)
    # what the metrics depend on beyond the architecture (a parent checkpoint's digest)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ArchitectureRow(Base):
    __tablename__ = "architectures"
    arch_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    space: Mapped[str] = mapped_column(String(64), index=True)
    space_version: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
                      Index("ix_trials_job_state", "job_id", "state"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer)
    arch_id: Mapped[str] = mapped_column(ForeignKey("architectures.arch_id"))
    state: Mapped[str] = mapped_column(String(16))  # complete|fail|unmeasured
    values: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # objective key -> value
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # every metric measured
    constraints: Mapped[list[float] | None] = mapped_column(JSON)  # Optuna semantics: <= 0 is satisfied
    feasible: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # strategy, predictor, labels used
    sampler: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what the strategy needs to replay it
    error: Mapped[str | None] = mapped_column(Text)
    duration_s: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobRound(Base):
    __tablename__ = "job_rounds"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    n_trials: Mapped[int] = mapped_column(Integer)
    n_evaluations: Mapped[int] = mapped_column(Integer)
    n_screened: Mapped[int] = mapped_column(Integer)
    hypervolume: Mapped[float | None] = mapped_column(Float)
    best: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobLog(Base):
    __tablename__ = "job_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TargetRow(Base):
    """A latency Target (device + backend + threads + batch + shape); ``key`` is ``Target.key``."""

    __tablename__ = "targets"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    device: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # Target.to_dict()
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class MeasurementRow(Base):
    """One Measurement: the summary columns for queries, the whole value in ``data``."""

    __tablename__ = "measurements"
    __table_args__ = (Index("ix_measurements_target_subject", "target_key", "subject"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_key: Mapped[str] = mapped_column(ForeignKey("targets.key", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    median_ms: Mapped[float | None] = mapped_column(Float)
    p90_ms: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    machine: Mapped[str | None] = mapped_column(String(300))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)  # Measurement.to_dict(): raw timings, kernels, versions
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LatencyModelRow(Base):
    """A Target's latency model: the JSON recipe it is rebuilt from, and how well it does."""

    __tablename__ = "latency_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target_key: Mapped[str] = mapped_column(ForeignKey("targets.key", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    n_measurements: Mapped[int] = mapped_column(Integer)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model: Mapped[bytes] = mapped_column(LargeBinary)  # UTF-8 JSON (the recipe); older rows: a pickle, never read
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; ``scopes`` is a list of read|write|agent|admin."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
