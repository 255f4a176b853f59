"""The job runner: a process that claims queued jobs from the database and runs them.

The API never runs a job in a request handler: it inserts the job as ``queued`` and one of
the runners takes it. Several runners may share a PostgreSQL database (claims use ``SELECT
... FOR UPDATE SKIP LOCKED``); on SQLite one runner holds the file's runner lock and any
other waits as a standby.

A running job's cancel flag is polled before every round and by a watcher thread every
``poll_s`` seconds; a cancel ends the job ``cancelled`` at its next round boundary. The
runner also takes over jobs whose runner died (no heartbeat for ``stale_after_s``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from .engine import run_claimed
from .storage import JobRecord, Store

__all__ = ["Runner", "die_with_parent"]

log = logging.getLogger("nas.runner")


def die_with_parent() -> None:
    """``preexec_fn`` for child processes (runners of ``nas serve``, a local cluster's
    processes): on Linux, the child gets SIGTERM when its parent dies, however it dies, so a
    killed server never leaves runners behind. Elsewhere a no-op."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Runner:
    """Claims and runs jobs one at a time. Thread-safe to ``stop()`` from another thread."""

    def __init__(self, store: Store, *, poll_s: float = 1.0, stale_after_s: float = 120.0,
                 name: str | None = None, executor_factory: Callable[[], object] | None = None) -> None:
        self.store, self.poll_s, self.stale_after_s = store, poll_s, stale_after_s
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:runner-{uuid.uuid4().hex[:6]}"
        self.executor_factory = executor_factory
        self._stop = threading.Event()
        self.current: str | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_once(self) -> str | None:
        """Claim one queued job (or a stale one) and run it to its end; its id, or None."""
        record = self.store.claim_next_queued(self.owner) or self._take_over_stale()
        if record is None:
            return None
        self._run(record)
        return record.id

    def serve_forever(self) -> None:
        lock = self._sqlite_lock()
        if self._stop.is_set():  # stopped while waiting as a standby
            return
        log.info("runner %s: waiting for jobs in %s", self.owner, self.store.display_url())
        try:
            self._serve()
        finally:
            if lock is not None:
                lock.close()  # releases the lock for a standby runner

    def _sqlite_lock(self):
        """On a SQLite file, the runner lock (``DB.runner-lock``, an advisory ``flock``): one
        runner works a SQLite database at a time (it has no ``SKIP LOCKED`` to share queued
        jobs); another waits as a standby and takes over when the first exits or dies, as the
        lock goes with its process. None on other databases, in memory, or without ``fcntl``."""
        path = self.store.engine.url.database if self.store.dialect == "sqlite" else None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return None
        if not path or path == ":memory:":
            return None
        f = open(f"{path}.runner-lock", "a+")
        announced = False
        while not self._stop.is_set():
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return f
            except BlockingIOError:
                if not announced:
                    log.warning("runner %s: another runner holds %s.runner-lock; waiting as a standby",
                                self.owner, path)
                    announced = True
                self._stop.wait(self.poll_s)
        f.close()
        return None

    def _serve(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                job_id = self.run_once()
                failing = False
            except Exception as e:  # the database went away for a moment: retry, do not die
                if failing:  # one traceback per outage, then one line per retry
                    log.warning("runner %s: claiming failed again (%s); retrying", self.owner,
                                str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__)
                else:
                    log.exception("runner %s: claiming failed; retrying", self.owner)
                failing = True
                job_id = None
            if job_id is None:
                self._stop.wait(self.poll_s)

    def _take_over_stale(self) -> JobRecord | None:
        for rec in self.store.stale_running_jobs(self.stale_after_s):
            try:
                return self.store.claim_job(rec.id, self.owner, steal_from=rec.owner)
            except Exception:
                continue
        return None

    def _run(self, record: JobRecord) -> None:
        self.current = record.id
        cancel = threading.Event()

        def watch() -> None:  # heartbeat + cancel flag, also while a long batch evaluates
            while not cancel.is_set() and not done.is_set():
                try:
                    self.store.heartbeat(record.id, self.owner)
                    if self.store.cancel_requested(record.id) or self._stop.is_set():
                        cancel.set()
                except Exception:
                    pass
                done.wait(self.poll_s)

        done = threading.Event()
        watcher = threading.Thread(target=watch, daemon=True, name=f"watch-{record.id}")
        watcher.start()
        try:
            executor = self.executor_factory() if self.executor_factory else None
            run_claimed(record, self.store, self.owner, executor=executor, should_stop=cancel.is_set)
        finally:
            done.set()
            watcher.join(timeout=5)
            self.current = None
        if self._stop.is_set() and not self.store.cancel_requested(record.id):
            # shutting down, not cancelled by anyone: hand the job back so a runner resumes it
            rec = self.store.get_job(record.id)
            if rec.state == "cancelled":
                try:
                    self.store.requeue(record.id)
                except Exception:
                    pass
