"""``Store``: every job, trial and architecture in SQL (SQLite by default, PostgreSQL supported).

Contract:

* The driver of a job is its only writer. ``claim_job`` records the owner; every
  ``save_round`` checks, in the same transaction, that the caller still owns the job, so a
  second writer fails with :class:`JobConflictError` instead of interleaving trials.
* ``save_round`` is atomic: the round's trials, the strategy's state and the job's counters
  commit together or not at all. A crash loses at most the round in flight, which the
  strategy (restored from the state saved with the previous round) proposes again.
* Safe to share between threads (one SQLAlchemy engine; sessions per call).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
import uuid
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import JobConflictError, JobNotFoundError, StorageError
from .models import ApiToken, ArchitectureRow, Job, JobLog, JobRound, LatencyModelRow, MeasurementRow, TargetRow, Trial
from .records import JOB_STATES, JobRecord, RoundRecord, TrialRecord

__all__ = ["Store", "default_database_url", "DATABASE_ENV_VAR"]

DATABASE_ENV_VAR = "NAS_DATABASE_URL"
MIGRATIONS = Path(__file__).parent / "migrations"
TOKEN_CACHE_S = 5.0
_PAGE_CACHE_ENTRIES = 32  # a sorted order of 100,000 trials is 800 kB
# what a page of trials shows (no ``sampler``: the strategy's replay data stays in the database)
_PAGE_COLUMNS = (Trial.id, Trial.job_id, Trial.number, Trial.round, Trial.arch_id, Trial.state, Trial.values,
                 Trial.metrics, Trial.constraints, Trial.feasible, Trial.source, Trial.error, Trial.duration_s,
                 ArchitectureRow.space, ArchitectureRow.space_version, ArchitectureRow.params)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(d: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we store is UTC
    return d.replace(tzinfo=timezone.utc) if d is not None and d.tzinfo is None else d


def _iso_aware(d: datetime | None) -> str | None:
    d = _aware(d)
    return d.isoformat() if d else None


def default_database_url() -> str:
    """``$NAS_DATABASE_URL``, else a SQLite file under ``$XDG_DATA_HOME/nas`` (``~/.local/share/nas``)."""
    if os.environ.get(DATABASE_ENV_VAR):
        return os.environ[DATABASE_ENV_VAR]
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "nas"
    return f"sqlite:///{base / 'nas.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (dashboard, API) never block the writer
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Store:
    def __init__(self, url: str | None = None, *, migrate: bool = True, echo: bool = False) -> None:
        self.url = url or default_database_url()
        self.engine: Engine = self._make_engine(self.url, echo)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._page_cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._live_tokens: dict[str, tuple[float, dict[str, Any]]] = {}
        self._token_generation = 0
        if migrate:
            self.upgrade()

    @staticmethod
    def _make_engine(url: str, echo: bool) -> Engine:
        if url.startswith(("postgresql://", "postgres://")):
            # SQLAlchemy 2.1 defaults to psycopg 3; we ship psycopg2
            url = "postgresql+psycopg2://" + url.split("://", 1)[1]
        if url.startswith("sqlite"):
            path = url.split("///", 1)[1] if "///" in url else ""
            if path and path != ":memory:":
                Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # the API serves requests from a thread pool of 40 (anyio's default): a smaller pool would
            # open and close a connection (and run its pragmas) for every request beyond it
            engine = create_engine(url, echo=echo, connect_args={"timeout": 30}, pool_size=40, max_overflow=20)
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        try:
            return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=20, max_overflow=20)
        except (ArgumentError, ImportError) as e:
            raise StorageError(f"database URL {url!r} is not usable ({e}); use e.g. sqlite:///path/nas.db or "
                               "postgresql://user@host:5432/db") from e

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # -- schema --------------------------------------------------------------------
    def alembic_config(self):
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def upgrade(self, revision: str = "head") -> None:
        """Run the migrations up to ``revision`` (idempotent)."""
        from alembic import command

        cfg = self.alembic_config()
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except DBAPIError as e:  # connection refused, unknown database, bad URL option, ...
            reason = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
            raise StorageError(f"cannot open or migrate the database {self.display_url()}: {reason}") from e

    def current_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": "nas_alembic_version"}).get_current_revision()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- jobs ----------------------------------------------------------------------
    def create_job(self, spec: dict[str, Any], *, space: str, strategy: str, seed: int, budget: int,
                   name: str | None = None, state: str = "queued", owner: str | None = None) -> JobRecord:
        now = _now()
        job = Job(id=uuid.uuid4().hex[:12], name=name, space=space, strategy=strategy, spec=spec, state=state,
                  seed=seed, budget=budget, n_trials=0, n_evaluations=0, rounds=0, owner=owner,
                  created_at=now, updated_at=now, started_at=now if state == "running" else None,
                  heartbeat_at=now if owner else None)
        with self._session.begin() as s:
            s.add(job)
        return self._record(job)

    def get_job(self, job_id: str, *, with_state: bool = False) -> JobRecord:
        """The job; its strategy state only with ``with_state`` (loaded by the job's runner alone)."""
        with self._session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise JobNotFoundError(job_id, self.display_url())
            return self._record(job, with_state=with_state)

    def list_jobs(self, state: str | None = None, limit: int = 50, offset: int = 0) -> list[JobRecord]:
        q = select(Job).order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
        if state is not None:
            if state not in JOB_STATES:
                raise ValueError(f"state: got {state!r}; valid: {', '.join(JOB_STATES)}")
            q = q.where(Job.state == state)
        with self._session() as s:
            return [self._record(j) for j in s.scalars(q)]

    def claim_job(self, job_id: str, owner: str, *, steal_from: str | None = None) -> JobRecord:
        """Make ``owner`` the job's writer and mark it running.

        A job owned by someone else is taken only if ``steal_from`` names that owner (the
        caller has checked it is dead), so two live processes never both write a job.
        """
        with self._session.begin() as s:
            job = self._locked_job(s, job_id)
            if job.owner not in (None, owner, steal_from) and job.state == "running":
                raise JobConflictError(f"job {job_id} is being run by {job.owner}")
            if steal_from is not None and job.owner is not None and (job.state != "running" or job.owner != steal_from):
                raise JobConflictError(f"job {job_id} changed hands ({job.state}, {job.owner}); not taking it over")
            now = _now()
            job.owner, job.state, job.heartbeat_at, job.updated_at = owner, "running", now, now
            job.started_at = job.started_at or now
            job.finished_at, job.error = None, None
            return self._record(job, with_state=True)

    def finish_job(self, job_id: str, owner: str, state: str, error: str | None = None) -> None:
        with self._session.begin() as s:
            now = _now()
            res = s.execute(update(Job).where(Job.id == job_id, Job.owner == owner)
                            .values(state=state, error=error, finished_at=now, updated_at=now, owner=None))
            if res.rowcount != 1:
                raise JobConflictError(f"job {job_id} is no longer owned by {owner}")

    def count_jobs(self, state: str | None = None) -> int:
        q = select(func.count()).select_from(Job)
        if state is not None:
            q = q.where(Job.state == state)
        with self._session() as s:
            return s.scalar(q) or 0

    def request_cancel(self, job_id: str) -> JobRecord:
        """Ask the job to stop: a queued job is cancelled at once, a running one at its next
        round (its runner polls the flag). Raises ``JobConflictError`` for a finished job."""
        with self._session.begin() as s:
            job = self._locked_job(s, job_id)
            if job.state not in ("queued", "running"):
                raise JobConflictError(f"job {job_id} is {job.state}; only a queued or running job can be cancelled")
            now = _now()
            job.cancel_requested, job.updated_at = True, now
            if job.state == "queued":
                job.state, job.finished_at = "cancelled", now
            return self._record(job)

    def requeue(self, job_id: str) -> JobRecord:
        """Put a cancelled or failed job back in the queue (resume); its trials are kept."""
        with self._session.begin() as s:
            job = self._locked_job(s, job_id)
            if job.state not in ("cancelled", "failed"):
                raise JobConflictError(f"job {job_id} is {job.state}; only a cancelled or failed job can be resumed")
            job.state, job.cancel_requested, job.owner = "queued", False, None
            job.error, job.finished_at, job.updated_at = None, None, _now()
            return self._record(job)

    def cancel_requested(self, job_id: str) -> bool:
        with self._session() as s:
            return bool(s.scalar(select(Job.cancel_requested).where(Job.id == job_id)))

    def claim_next_queued(self, owner: str) -> JobRecord | None:
        """Take the oldest queued job for ``owner`` (a runner), or None.

        PostgreSQL: ``SELECT ... FOR UPDATE SKIP LOCKED``, so runners never wait on or take the
        same job. SQLite: the write lock of ``BEGIN IMMEDIATE`` serialises claims (one runner
        per file is the supported setup; more are safe, only slower).
        """
        now = _now()
        with self._session.begin() as s:
            q = select(Job).where(Job.state == "queued").order_by(Job.created_at, Job.id).limit(1)
            if self.dialect == "postgresql":
                q = q.with_for_update(skip_locked=True)
            job = s.scalars(q).first()
            if job is None:
                return None
            res = s.execute(update(Job).where(Job.id == job.id, Job.state == "queued")
                            .values(state="running", owner=owner, heartbeat_at=now, updated_at=now,
                                    started_at=func.coalesce(Job.started_at, now)))
            if res.rowcount != 1:  # another runner won the race (SQLite): try again later
                return None
            s.flush()
            s.refresh(job)
            return self._record(job, with_state=True)

    def release_job(self, job_id: str, owner: str) -> None:
        """Hand a claimed job back to the queue (its runner is shutting down before finishing it)."""
        with self._session.begin() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.owner == owner)
                      .values(state="queued", owner=None, updated_at=_now()))

    def heartbeat(self, job_id: str, owner: str) -> None:
        with self._session.begin() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.owner == owner).values(heartbeat_at=_now()))

    def set_provenance(self, job_id: str, provenance: dict[str, Any]) -> None:
        with self._session.begin() as s:
            s.execute(update(Job).where(Job.id == job_id).values(provenance=provenance or None))

    def stale_running_jobs(self, older_than_s: float) -> list[JobRecord]:
        """Running jobs whose owner has not written a heartbeat for ``older_than_s`` seconds."""
        from datetime import timedelta

        limit = _now() - timedelta(seconds=older_than_s)
        with self._session() as s:
            return [self._record(j) for j in s.scalars(select(Job).where(Job.state == "running",
                                                                          Job.heartbeat_at < limit))]

    # -- API tokens ------------------------------------------------------------------
    def create_token(self, name: str, scopes: Sequence[str], secret: str | None = None) -> tuple[str, dict[str, Any]]:
        """A new token: returns the secret (shown once) and its public record. Only its hash is
        kept. ``secret`` registers one chosen by the operator (``NAS_ADMIN_TOKEN``) instead."""
        import hashlib
        import secrets

        if secret is not None and (len(secret) < 16 or not secret.isprintable() or " " in secret):
            raise ValueError("token: a chosen secret needs at least 16 printable characters and no spaces")
        secret = secret or "nas_" + secrets.token_urlsafe(32)
        row = ApiToken(id=uuid.uuid4().hex[:12], name=name, token_hash=hashlib.sha256(secret.encode()).hexdigest(),
                       scopes=sorted(set(scopes)), created_at=_now())
        with self._session.begin() as s:
            s.add(row)
        return secret, self._token(row)

    def list_tokens(self) -> list[dict[str, Any]]:
        with self._session() as s:
            return [self._token(t) for t in s.scalars(select(ApiToken).order_by(ApiToken.created_at, ApiToken.id))]

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        with self._session.begin() as s:
            row = s.get(ApiToken, token_id)
            if row is None:
                raise KeyError(f"token: got {token_id!r}; no such token (see `nas tokens list`)")
            row.revoked_at = row.revoked_at or _now()
            record = self._token(row)
        with self._cache_lock:
            self._live_tokens.clear()
            self._token_generation += 1
        return record

    def verify_token(self, secret: str) -> dict[str, Any] | None:
        """The token's record if ``secret`` is a live token, else None.

        A live token is remembered for ``TOKEN_CACHE_S`` seconds (every request of a polling
        dashboard is authenticated; the lookup would be a third of its cost): a revocation made
        through this Store takes effect at once, one made by another process within that time.
        """
        import hashlib

        digest = hashlib.sha256(secret.encode()).hexdigest()
        now = time.monotonic()
        with self._cache_lock:
            hit = self._live_tokens.get(digest)
            generation = self._token_generation
        if hit is not None and hit[0] > now:
            return dict(hit[1])
        with self._session() as s:
            row = s.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
            if row is None or row.revoked_at is not None:
                return None
            record = self._token(row)
        with self._cache_lock:
            if len(self._live_tokens) > 10_000:
                self._live_tokens.clear()
            if generation == self._token_generation:  # no revocation since the row was read
                self._live_tokens[digest] = (now + TOKEN_CACHE_S, record)
        return dict(record)

    @staticmethod
    def _token(t: ApiToken) -> dict[str, Any]:
        return {"id": t.id, "name": t.name, "scopes": list(t.scopes), "created_at": _iso_aware(t.created_at),
                "revoked_at": _iso_aware(t.revoked_at)}

    def delete_job(self, job_id: str) -> None:
        with self._session.begin() as s:
            job = s.get(Job, job_id)
            if job is not None:
                s.delete(job)

    # -- trials --------------------------------------------------------------------
    def save_round(self, job_id: str, owner: str, trials: Sequence[TrialRecord], round_: RoundRecord | None,
                   strategy_state: bytes | None, *, hypervolume: float | None = None,
                   measurements: Sequence[Any] = ()) -> None:
        """Atomically persist a round: trials (bulk), the round summary, the strategy state, and
        the latency Measurements its evaluations made."""
        now = _now()
        with self._session.begin() as s:
            n_eval = sum(t.counts_as_evaluation for t in trials)
            values = dict(heartbeat_at=now, updated_at=now, n_trials=Job.n_trials + len(trials),
                          n_evaluations=Job.n_evaluations + n_eval, strategy_state=strategy_state)
            if round_ is not None:
                values["rounds"] = round_.round + 1
                values["hypervolume"] = hypervolume
            res = s.execute(update(Job).where(Job.id == job_id, Job.owner == owner).values(**values))
            if res.rowcount != 1:
                raise JobConflictError(f"job {job_id} is no longer owned by {owner}; not writing its trials")
            try:
                self._insert_trials(s, trials, now)
                self._insert_measurements(s, measurements, job_id, now)
                if round_ is not None:
                    s.execute(insert(JobRound), [dict(round_.to_dict(), created_at=now)])
            except IntegrityError as e:  # the transaction rolls back: nothing of the round is written
                raise StorageError(f"job {job_id}: round not saved, a trial number or round already exists "
                                   f"({type(e.orig).__name__})") from e

    def _insert_trials(self, s: Session, trials: Sequence[TrialRecord], now: datetime) -> None:
        if not trials:
            return
        archs = {t.arch_id: t.arch for t in trials}
        rows = [dict(arch_id=a["arch_id"], space=a["space"], space_version=a["space_version"], params=a["params"],
                     created_at=now) for a in archs.values()]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        # one multi-row statement per chunk: an executemany of ON CONFLICT runs row by row on psycopg2
        for i in range(0, len(rows), 1000):
            s.execute(dialect_insert(ArchitectureRow).values(rows[i:i + 1000])
                      .on_conflict_do_nothing(index_elements=["arch_id"]))
        s.execute(insert(Trial), [
            dict(job_id=t.job_id, number=t.number, round=t.round, arch_id=t.arch_id, state=t.state,
                 values=t.values, metrics=t.metrics, constraints=t.constraints, feasible=t.feasible,
                 source=t.source, sampler=t.sampler, error=t.error, duration_s=t.duration_s, created_at=now)
            for t in trials])

    def load_trials(self, job_id: str, *, states: Iterable[str] | None = None) -> list[TrialRecord]:
        q = (select(Trial, ArchitectureRow).join(ArchitectureRow, Trial.arch_id == ArchitectureRow.arch_id)
             .where(Trial.job_id == job_id).order_by(Trial.number))
        if states is not None:
            q = q.where(Trial.state.in_(list(states)))
        with self._session() as s:
            return [self._trial(t, a) for t, a in s.execute(q)]

    def page_trials(self, job_id: str, *, state: str | None = None, sort: str | None = None, desc: bool = False,
                    limit: int = 50, offset: int = 0) -> tuple[list[TrialRecord], int]:
        """One page of a job's trials and the total matching, sorted in SQL (by number, or by an
        objective/metric key: ``sort="latency_ms@raspi4"``; trials without it come last).

        A page costs the same at any offset: the ids are found on the ``(job_id, number)``
        index alone, then only the page's rows are read. Trials are never updated, so a job's
        ``n_trials`` versions it: the total of an unfiltered page is that counter, and the
        order by a metric (a sort over every row's JSON) is computed once per version.
        ``sampler`` is not loaded (use :meth:`load_trials`).
        """
        with self._session() as s:
            n_trials = s.scalar(select(Job.n_trials).where(Job.id == job_id)) or 0
            # trials are numbered 0..n_trials-1 in the transaction that counts them: reading only
            # those keeps a page, its total and a cached order consistent while a round lands
            where = [Trial.job_id == job_id, Trial.number < n_trials] + (
                [Trial.state == state] if state is not None else [])
            if state is None:
                total = n_trials
            else:
                total = self._cached(("count", job_id, n_trials, state), lambda: s.scalar(
                    select(func.count()).select_from(Trial).where(*where)) or 0)
            if sort in (None, "number"):
                ids = s.scalars(select(Trial.id).where(*where).order_by(Trial.number.desc() if desc else Trial.number)
                                .limit(limit).offset(offset)).all()
            else:
                value = Trial.metrics[sort].as_float()
                order = self._cached(("order", job_id, n_trials, state, sort, desc), lambda: array("q", s.scalars(
                    select(Trial.id).where(*where)
                    .order_by(value.is_(None), value.desc() if desc else value, Trial.number)).all()))
                ids = order[offset:offset + limit].tolist()
            return self._trials_by_id(s, ids), total

    def feasible_values(self, job_id: str, keys: Sequence[str], start: int = 0, stop: int | None = None
                        ) -> list[tuple[Any, ...]]:
        """``(trial id, arch_id, *values of keys)`` of a job's complete feasible trials numbered
        in ``[start, stop)``, in trial order: all a Pareto front needs, extracted in SQL (no
        row's JSON is decoded here)."""
        q = (select(Trial.id, Trial.arch_id, *(Trial.values[k].as_float() for k in keys))
             .where(Trial.job_id == job_id, Trial.state == "complete", Trial.feasible.is_(True),
                    Trial.number >= start)
             .order_by(Trial.number))
        if stop is not None:
            q = q.where(Trial.number < stop)
        with self._session() as s:
            return [tuple(r) for r in s.execute(q)]

    def trials_by_id(self, ids: Sequence[int]) -> list[TrialRecord]:
        """The trials with these ids (from :meth:`feasible_values`), in that order; no ``sampler``."""
        with self._session() as s:
            return self._trials_by_id(s, ids)

    def _trials_by_id(self, s: Session, ids: Sequence[int]) -> list[TrialRecord]:
        rows: dict[int, Any] = {}
        for i in range(0, len(ids), 500):  # bounded IN lists
            rows.update((r.id, r) for r in s.execute(select(*_PAGE_COLUMNS).join(
                ArchitectureRow, Trial.arch_id == ArchitectureRow.arch_id).where(Trial.id.in_(ids[i:i + 500]))))
        return [self._trial_row(rows[i]) for i in ids]

    def _cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """A small per-Store cache of values derived from a job's immutable trials (the key
        holds the job's ``n_trials``, so a new round makes a new key)."""
        with self._cache_lock:
            if key in self._page_cache:
                self._page_cache.move_to_end(key)
                return self._page_cache[key]
        value = compute()
        with self._cache_lock:
            self._page_cache[key] = value
            while len(self._page_cache) > _PAGE_CACHE_ENTRIES:
                self._page_cache.popitem(last=False)
        return value

    def find_trial(self, arch_id: str, job_id: str | None = None) -> TrialRecord | None:
        """The first measured trial of ``arch_id`` in ``job_id``, or in the most recent job
        that measured it (``job_id=None``); an unmeasured or failed trial when nothing better."""
        q = (select(Trial, ArchitectureRow).join(ArchitectureRow, Trial.arch_id == ArchitectureRow.arch_id)
             .join(Job, Job.id == Trial.job_id).where(Trial.arch_id == arch_id)
             .order_by((Trial.state != "complete"), Job.created_at.desc(), Trial.number).limit(1))
        if job_id is not None:
            q = q.where(Trial.job_id == job_id)
        with self._session() as s:
            row = s.execute(q).first()
            return None if row is None else self._trial(*row)

    def get_architecture(self, arch_id: str) -> dict[str, Any] | None:
        with self._session() as s:
            a = s.get(ArchitectureRow, arch_id)
            return None if a is None else self._arch(a)

    def space_config(self, arch_id: str, job_id: str | None = None) -> dict[str, Any]:
        """The space configuration (``parent=...`` and other options) under which ``job_id``, or
        else the most recent job that tried ``arch_id``, built it: an architecture's params alone
        do not say which parent's widths they slice. ``{}`` when no such job tried it."""
        q = (select(Job.spec).join(Trial, Trial.job_id == Job.id).where(Trial.arch_id == arch_id)
             .order_by(Job.created_at.desc()).limit(1))
        if job_id is not None:
            q = q.where(Job.id == job_id)
        with self._session() as s:
            spec = s.scalar(q)
        config = dict((spec or {}).get("space") or {})
        config.pop("name", None)
        return config

    def count_trials(self, job_id: str) -> int:
        with self._session() as s:
            return s.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job_id)) or 0

    def load_rounds(self, job_id: str) -> list[RoundRecord]:
        with self._session() as s:
            return [RoundRecord(job_id=r.job_id, round=r.round, n_trials=r.n_trials, n_evaluations=r.n_evaluations,
                                n_screened=r.n_screened, hypervolume=r.hypervolume, best=r.best, seconds=r.seconds,
                                info=r.info)
                    for r in s.scalars(select(JobRound).where(JobRound.job_id == job_id).order_by(JobRound.round))]

    # -- latency: targets, measurements, fitted models ----------------------------------
    def add_target(self, target: Any) -> Any:
        """Register a ``latency.Target`` (idempotent: the same key is stored once)."""
        with self._session.begin() as s:
            if s.get(TargetRow, target.key) is None:
                s.add(TargetRow(key=target.key, name=target.name, device=target.device, backend=target.backend,
                                spec=target.to_dict(), created_at=_now()))
        return target

    def list_targets(self) -> list[Any]:
        from latency import Target

        with self._session() as s:
            return [Target.from_dict(r.spec) for r in s.scalars(select(TargetRow).order_by(TargetRow.created_at,
                                                                                         TargetRow.key))]

    def find_target(self, name_or_key: str) -> Any:
        """A stored Target by key, or by name when one Target has that name; ``KeyError`` otherwise."""
        from latency import Target

        with self._session() as s:
            row = s.get(TargetRow, name_or_key)
            rows = [row] if row is not None else list(s.scalars(select(TargetRow).where(TargetRow.name == name_or_key)))
        if len(rows) != 1:
            known = ", ".join(t.name for t in self.list_targets()) or "(none registered)"
            why = "several targets have that name; use the key" if rows else f"known targets: {known}"
            raise KeyError(f"target: got {name_or_key!r}; {why}")
        return Target.from_dict(rows[0].spec)

    def add_measurements(self, measurements: Sequence[Any], job_id: str | None = None) -> int:
        """Store Measurements (their Targets are registered on the way); all or nothing."""
        with self._session.begin() as s:
            self._insert_measurements(s, measurements, job_id, _now())
        return len(measurements)

    @staticmethod
    def _insert_measurements(s: Session, measurements: Sequence[Any], job_id: str | None, now: datetime) -> None:
        if not measurements:
            return
        for key in {m.target.key for m in measurements}:
            if s.get(TargetRow, key) is None:
                t = next(m.target for m in measurements if m.target.key == key)
                s.add(TargetRow(key=key, name=t.name, device=t.device, backend=t.backend, spec=t.to_dict(),
                                created_at=now))
        s.flush()
        s.execute(insert(MeasurementRow), [
            dict(target_key=m.target.key, subject=m.subject, job_id=job_id,
                 median_ms=m.median_ms if m.ok else None, p90_ms=m.p90_ms if m.ok else None, error=m.error,
                 machine=m.machine[:300], data=m.to_dict(), created_at=now) for m in measurements])

    def load_measurements(self, target: Any = None, *, subject: str | None = None, job_id: str | None = None,
                          ok_only: bool = False, limit: int | None = None, offset: int = 0) -> list[Any]:
        from latency import Measurement

        q = select(MeasurementRow).order_by(MeasurementRow.id)
        if target is not None:
            q = q.where(MeasurementRow.target_key == (target if isinstance(target, str) else target.key))
        if subject is not None:
            q = q.where(MeasurementRow.subject == subject)
        if job_id is not None:
            q = q.where(MeasurementRow.job_id == job_id)
        if ok_only:
            q = q.where(MeasurementRow.error.is_(None))
        q = q.offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self._session() as s:
            return [Measurement.from_dict(r.data) for r in s.scalars(q)]

    def unmeasured_architectures(self, target: Any, *, limit: int = 10, spaces: Sequence[str] | None = None
                                 ) -> list[dict[str, Any]]:
        """Stored architectures (newest first) never measured on ``target``. One that failed to
        export or run has a (failed) Measurement too, and is not handed out again."""
        measured = select(MeasurementRow.subject).where(MeasurementRow.target_key == target.key)
        q = (select(ArchitectureRow).where(ArchitectureRow.arch_id.not_in(measured))
             .order_by(ArchitectureRow.created_at.desc(), ArchitectureRow.arch_id).limit(limit))
        if spaces is not None:
            q = q.where(ArchitectureRow.space.in_(list(spaces)))
        with self._session() as s:
            return [self._arch(a) for a in s.scalars(q)]

    def save_latency_model(self, target: Any, kind: str, recipe: Mapping[str, Any], n_measurements: int,
                           info: dict[str, Any] | None = None) -> None:
        """Store how ``target``'s latency model was fitted: ``recipe`` is JSON of our own data
        (its kind, space and training measurements), from which the model is rebuilt, never a
        pickled estimator (a library's internals change between releases)."""
        import json

        self.add_target(target)
        with self._session.begin() as s:
            s.add(LatencyModelRow(target_key=target.key, kind=kind, n_measurements=n_measurements, info=info,
                                  model=json.dumps(dict(recipe), sort_keys=True).encode(), created_at=_now()))

    def load_latency_model(self, target: Any, kind: str | None = None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The newest model of ``target`` (of ``kind``) as (recipe, info); None if there is none. A
        row an older release wrote as a pickle has the recipe ``{}`` (it is never unpickled)."""
        import json

        q = (select(LatencyModelRow).where(LatencyModelRow.target_key == target.key)
             .order_by(LatencyModelRow.id.desc()).limit(1))
        if kind is not None:
            q = q.where(LatencyModelRow.kind == kind)
        with self._session() as s:
            row = s.scalars(q).first()
            if row is None:
                return None
            try:
                recipe = json.loads(row.model.decode())
            except (UnicodeDecodeError, ValueError):
                recipe = {}
            return recipe, {"kind": row.kind, "n_measurements": row.n_measurements, **(row.info or {})}

    # -- logs ----------------------------------------------------------------------
    def log(self, job_id: str, message: str, level: str = "info") -> None:
        with self._session.begin() as s:
            s.add(JobLog(job_id=job_id, level=level, message=message, created_at=_now()))

    def logs(self, job_id: str) -> list[tuple[str, str]]:
        with self._session() as s:
            return [(r.level, r.message) for r in
                    s.scalars(select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.id))]

    def _locked_job(self, s: Session, job_id: str) -> Job:
        """The job row, locked for this transaction (``FOR UPDATE``); ``JobNotFoundError`` if absent."""
        job = s.get(Job, job_id, with_for_update=True)
        if job is None:
            raise JobNotFoundError(job_id, self.display_url())
        return job

    @staticmethod
    def _arch(a: ArchitectureRow) -> dict[str, Any]:
        return {"arch_id": a.arch_id, "space": a.space, "space_version": a.space_version, "params": a.params}

    @classmethod
    def _trial(cls, t: Trial, a: ArchitectureRow) -> TrialRecord:
        return TrialRecord(job_id=t.job_id, number=t.number, round=t.round, arch=cls._arch(a), state=t.state,
                           values=t.values, metrics=t.metrics, constraints=t.constraints, feasible=t.feasible,
                           source=t.source, sampler=t.sampler, error=t.error, duration_s=t.duration_s)

    @staticmethod
    def _trial_row(r: Any) -> TrialRecord:
        return TrialRecord(job_id=r.job_id, number=r.number, round=r.round,
                           arch={"arch_id": r.arch_id, "space": r.space, "space_version": r.space_version,
                                 "params": r.params}, state=r.state, values=r.values, metrics=r.metrics,
                           constraints=r.constraints, feasible=r.feasible, source=r.source, error=r.error,
                           duration_s=r.duration_s)

    @staticmethod
    def _record(j: Job, with_state: bool = False) -> JobRecord:
        return JobRecord(id=j.id, name=j.name, space=j.space, strategy=j.strategy, spec=j.spec, state=j.state,
                         seed=j.seed, budget=j.budget, n_trials=j.n_trials, n_evaluations=j.n_evaluations,
                         rounds=j.rounds, hypervolume=j.hypervolume, owner=j.owner, error=j.error,
                         created_at=_aware(j.created_at), updated_at=_aware(j.updated_at),
                         started_at=_aware(j.started_at), finished_at=_aware(j.finished_at),
                         heartbeat_at=_aware(j.heartbeat_at), cancel_requested=bool(j.cancel_requested),
                         provenance=j.provenance, strategy_state=j.strategy_state if with_state else None)



# -- surviving a database restart ------------------------------------------------------------
_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)  # about 8 s: a PostgreSQL restart, a failover


def _retryable(e: DBAPIError) -> bool:
    """A dropped connection (server restarted, backend terminated) or a refused one (server
    not up yet): the transaction was rolled back, so running it again is safe."""
    if e.connection_invalidated:
        return True
    text = str(e.orig).lower() if isinstance(e, OperationalError) else ""
    return any(m in text for m in ("could not connect", "connection refused", "the database system is",
                                   "server closed the connection", "terminating connection"))


def _retry_on_disconnect(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        for delay in (*_RETRY_DELAYS_S, None):
            try:
                return fn(self, *args, **kwargs)
            except DBAPIError as e:
                if delay is None or self.dialect == "sqlite" or not _retryable(e):
                    raise
                time.sleep(delay)
    return wrapper


# every public method runs its own transactions: wrap them all (a commit whose acknowledgement
# was lost is the one case a retry repeats; unique keys turn that into an error, not a duplicate)
for _name, _fn in list(vars(Store).items()):
    if inspect.isfunction(_fn) and not _name.startswith("_") and _name not in ("upgrade", "dispose", "display_url",
                                                                                 "alembic_config"):
        setattr(Store, _name, _retry_on_disconnect(_fn))
