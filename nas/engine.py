"""``run_job``: the one entry point of the search engine (CLI, API runner and tests all call it).

A job runs in rounds: the strategy proposes a batch (screening happens inside the strategy),
the executor evaluates it (Ray Tune by default), the driver writes the round's trials, the
round summary and the strategy's state in one transaction, and the loop repeats until the
budget of real evaluations is spent. The driver is the job's only writer.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from spaces import Architecture, InvalidConfigError, SearchSpace, SpacesError, UnknownSpaceError, get_space

from .errors import EvaluationError, JobCancelled, JobConflictError, NasError, SpecError, StrategyError
from .evaluation import Executor, make_evaluator, make_executor
from .fronts import RunningFront, front_of
from .problem import Problem
from .spec import JobSpec
from .storage import JobRecord, RoundRecord, Store, TrialRecord
from .strategies import SearchContext, Strategy, get_strategy

__all__ = ["run_job", "prepare_job", "JobResult", "Progress", "PreparedJob"]

_logger = logging.getLogger("nas.runner")
# frames of a failure's traceback kept in the job's log (the innermost ones: where it broke)
TRACEBACK_FRAMES = 6

# a job whose owner has not written for this long, on another host, is considered abandoned
STALE_AFTER = timedelta(minutes=5)
# proposals in a row that bring no new measurement (re-used or unmeasurable) before the job ends;
# counted in proposals, not rounds, so a batch of 1 gets as many chances as a batch of 10
MAX_IDLE_PROPOSALS = 500


@dataclass(frozen=True)
class Progress:
    """What a progress display gets after every round."""

    job_id: str
    round: int
    n_evaluations: int
    budget: int
    n_trials: int
    hypervolume: float | None
    best: dict[str, float]


@dataclass(frozen=True)
class JobResult:
    job_id: str
    state: str
    trials: list[TrialRecord]
    pareto: list[TrialRecord]
    hypervolume: float | None
    database: str
    objectives: list[dict[str, str]] = field(default_factory=list)
    n_evaluations: int = 0
    budget: int = 0
    error: str | None = None  # why a failed job failed

    def to_dict(self) -> dict[str, Any]:
        def trial(t: TrialRecord) -> dict[str, Any]:
            return {"number": t.number, "arch": t.arch, "values": t.values, "state": t.state,
                    "feasible": t.feasible, "source": t.source}
        return {"job_id": self.job_id, "state": self.state, "error": self.error, "database": self.database,
                "n_evaluations": self.n_evaluations, "budget": self.budget,
                "objectives": self.objectives, "hypervolume": self.hypervolume,
                "trials": [trial(t) for t in self.trials], "pareto": [trial(t) for t in self.pareto]}


@dataclass(frozen=True)
class PreparedJob:
    """A spec checked against the registries: everything ``run_job`` needs, nothing stored yet."""

    spec: JobSpec
    space: SearchSpace
    problem: Problem
    strategy: Strategy


def prepare_job(spec: JobSpec | Mapping[str, Any], *, runnable: bool = True) -> PreparedJob:
    """Validate a spec fully (space, dataset, objectives, devices, strategy, constraints).

    ``runnable=False`` is for readers of a stored job (its objectives, its front): the check
    that the installed libraries can run the strategy is left out, as they run nothing."""
    if not isinstance(spec, JobSpec):
        spec = JobSpec.from_dict(spec)
    try:
        space = get_space(spec.space.name, **spec.space.config)
    except UnknownSpaceError as e:
        raise SpecError("space.name", e.name, ", ".join(e.valid)) from None
    except InvalidConfigError as e:
        raise SpecError(e.field, e.given, e.valid) from None
    except SpacesError as e:  # data files missing and the like
        raise SpecError("space", spec.space.name, "", reason=str(e)) from None
    try:
        problem = Problem.resolve(spec, space)
    except SpacesError as e:
        raise SpecError("space", spec.space.name, "", reason=str(e)) from None
    _check_profilers(problem, space)
    strategy = get_strategy(spec.strategy.name, **spec.strategy.params)
    if runnable:
        strategy.check_runtime(space, problem)  # the installed libraries can run it, or a SpecError now
    return PreparedJob(spec, space, problem, strategy)


def _check_profilers(problem: Problem, space: SearchSpace) -> None:
    """A profiled latency key needs its backend here, and a space with networks: say so up front,
    not as one failed trial after another."""
    from spaces import is_profiled

    for key in problem.keys:
        if not is_profiled(key):
            continue
        from latency import BackendNotInstalledError, get_target
        from latency.profilers import get_profiler

        target = get_target(key.partition("@")[2])
        try:
            get_profiler(target.backend)
        except BackendNotInstalledError as e:
            raise SpecError("objectives.device", target.name, "", reason=str(e)) from None


def check_resume(spec: JobSpec, store: Store, job_id: str):
    """The job to resume, if ``spec`` is the one it was created with (``execution`` may differ:
    where evaluations run does not change what the job is)."""
    record = store.get_job(job_id)
    stored = JobSpec.from_dict(record.spec).model_dump(mode="json")
    given = spec.model_dump(mode="json")
    stored.pop("execution", None)
    given.pop("execution", None)
    diff = _first_difference(stored, given)
    if diff is not None:
        path, was, now = diff
        raise SpecError(path, now, f"{was!r}, the value job {job_id} was created with",
                        reason="--resume needs the job's own spec")
    return record


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _owner_alive(owner: str | None, heartbeat: datetime | None) -> bool:
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)  # PermissionError also means the pid exists
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    return heartbeat is not None and datetime.now(timezone.utc) - heartbeat < STALE_AFTER


def run_job(spec: JobSpec | Mapping[str, Any], store: Store | None = None, *, resume: str | None = None,
            executor: Executor | None = None, progress: Callable[[Progress], None] | None = None,
            log: Callable[[str], None] | None = None) -> JobResult:
    """Run (or with ``resume=JOB_ID``, continue) a search job and return its result.

    Everything is validated before the database is touched: a bad spec raises
    :class:`SpecError` and leaves nothing behind.
    """
    job = prepare_job(spec)
    spec = job.spec
    store = store or Store()
    owner = _owner()
    if resume is not None:
        record = check_resume(spec, store, resume)
        if record.state == "completed":
            return _result(store, record.id, job.problem, job.space)
        alive = record.state == "running" and record.owner and _owner_alive(record.owner, record.heartbeat_at)
        if alive:
            raise JobConflictError(f"job {resume} is still being run by {record.owner}")
    own_executor = executor is None
    executor = executor or make_executor(spec.execution.backend, spec.execution.max_concurrent,
                                         spec.execution.max_retries)
    try:
        executor.start()  # an unreachable Ray cluster fails here, before any row is written
        if resume is not None:
            record = store.claim_job(resume, owner, steal_from=record.owner)
        else:
            record = store.create_job(spec.model_dump(mode="json", exclude_none=True), space=spec.space.name,
                                      strategy=spec.strategy.name, seed=spec.seed, budget=spec.budget.evaluations,
                                      name=spec.name, state="running", owner=owner)
    except BaseException:
        if own_executor:
            executor.close()
        raise
    return _run(job, store, record, owner, executor, own_executor, progress, log, None)


def run_claimed(record: JobRecord, store: Store, owner: str, *, executor: Executor | None = None,
                should_stop: Callable[[], bool] | None = None, progress: Callable[[Progress], None] | None = None,
                log: Callable[[str], None] | None = None) -> JobResult | None:
    """Run a job a runner has claimed (``store.claim_next_queued``) to its end.

    ``should_stop`` is polled before every round; when it says so the job ends ``cancelled``
    (resumable). A failure ends the job ``failed`` with its error; neither raises. A spec that
    no longer validates (e.g. a space removed since) fails the job with the reason.
    """
    try:
        job = prepare_job(JobSpec.from_dict(record.spec))
    except NasError as e:
        _logger.error("job %s failed: %s", record.id, e)
        store.log(record.id, f"failed: {e}", "error")
        store.finish_job(record.id, owner, "failed", error=str(e))
        return None
    spec = job.spec
    own_executor = executor is None
    executor = executor or make_executor(spec.execution.backend, spec.execution.max_concurrent,
                                         spec.execution.max_retries)
    try:
        executor.start()
    except BaseException as e:
        if own_executor:
            executor.close()
        _logger.exception("job %s failed: its executor did not start", record.id)
        store.log(record.id, f"failed: {e}\n{_last_frames(e)}", "error")
        store.finish_job(record.id, owner, "failed", error=f"{type(e).__name__}: {e}")
        return None
    try:
        return _run(job, store, record, owner, executor, own_executor, progress, log, should_stop)
    except JobCancelled:
        return _result(store, record.id, job.problem, job.space)
    except Exception:  # recorded as failed by _run (reason and traceback in the job's log)
        _logger.exception("job %s failed", record.id)  # and in the runner's output (`nas serve`)
        return None


def _run(job: PreparedJob, store: Store, record: JobRecord, owner: str, executor: Executor, own_executor: bool,
         progress: Callable[[Progress], None] | None, log: Callable[[str], None] | None,
         should_stop: Callable[[], bool] | None) -> JobResult:
    job_id = record.id

    def job_log(msg: str, level: str = "info") -> None:
        store.log(job_id, msg, level)
        if log:
            log(msg)

    try:
        front = _loop(job, store, job_id, owner, record.strategy_state, executor, progress, job_log, should_stop)
    except BaseException as e:
        state = "cancelled" if isinstance(e, (KeyboardInterrupt, JobCancelled)) else "failed"
        e.job_id = job_id  # for the caller's message (`--resume JOB_ID`)
        try:
            if isinstance(e, JobCancelled):
                job_log("cancelled on request; resume continues it from the last round", "warning")
            elif state == "cancelled":
                job_log("interrupted: the job is cancelled; `nas search SPEC --resume JOB_ID` continues it",
                        "warning")
            else:
                job_log(f"failed: {_reason(e)}\n{_last_frames(e)}", "error")
            store.finish_job(job_id, owner, state, error=_reason(e))
        except Exception:  # the original error matters more than the bookkeeping one
            pass
        raise
    finally:
        if own_executor:
            executor.close()
    _final_report(job, front, job_log)
    store.finish_job(job_id, owner, "completed")
    return _result(store, job_id, job.problem, job.space)


def _reason(e: BaseException) -> str:
    """A failed job's ``error``: what the job, the API and the dashboard show."""
    if isinstance(e, StrategyError):
        return (f"{e} (a fault in the strategy's own code, not in an evaluation: the trials evaluated "
                "before it are stored)")
    return f"{type(e).__name__}: {e}"


def _last_frames(e: BaseException) -> str:
    """The innermost frames of the traceback, of the cause when there is one."""
    inner = e.__cause__ or e
    return "".join(traceback.format_exception(type(inner), inner, inner.__traceback__,
                                              limit=-TRACEBACK_FRAMES)).rstrip()


def _strategy_step(strategy: Strategy, step: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a strategy's method; a fault in it (not a spec error, not a cancel) is a StrategyError."""
    try:
        return fn(*args)
    except (NasError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise StrategyError(strategy.name, step, e) from e


FINAL_REPORT_LIMIT = 5


def _final_report(job: PreparedJob, front: list[TrialRecord], job_log: Callable[..., None]) -> None:
    """The space's ``final_metrics`` of the job's Pareto front (best first by the first
    objective, at most ``FINAL_REPORT_LIMIT``), one log line each. A failure here is logged
    and does not fail a search that has finished."""
    keys = [k for k in job.space.final_metrics() if k in job.space.metrics()]
    if not keys:
        return
    obj = job.problem.objectives[0]
    sign = 1.0 if obj.direction == "minimize" else -1.0
    for t in sorted(front, key=lambda t: sign * t.values[obj.key])[:FINAL_REPORT_LIMIT]:
        try:
            extra = job.space.evaluate(Architecture.from_dict(t.arch), keys)
        except Exception as e:  # noqa: BLE001 - the search is done; say what could not be measured
            job_log(f"final metrics of trial {t.number}: {type(e).__name__}: {e}", "warning")
            continue
        shown = ", ".join(f"{k} {t.metrics[k]:.6g}" for k in job.problem.keys if k in (t.metrics or {}))
        job_log(f"final metrics of trial {t.number} ({shown}): "
                + ", ".join(f"{k} {v:.6g}" for k, v in extra.items()))


def _loop(job: PreparedJob, store: Store, job_id: str, owner: str, state: bytes | None, executor: Executor,
          progress: Callable[[Progress], None] | None, job_log: Callable[..., None],
          should_stop: Callable[[], bool] | None = None) -> list[TrialRecord]:
    """The search's rounds until the budget is spent; returns the job's Pareto front."""
    spec, space, problem, strategy = job.spec, job.space, job.problem, job.strategy
    history = store.load_trials(job_id)
    rounds = store.load_rounds(job_id)
    _strategy_step(strategy, "start", strategy.start,
                   SearchContext(space, problem, spec.seed, spec.budget.evaluations, job_log), history, state)
    evaluator = make_evaluator(space, problem.keys)
    # in the driver, before any worker: a parent missing on disk is trained here, once
    provenance = space.provenance()
    if provenance:
        old = store.get_job(job_id).provenance
        if old and old != provenance:
            raise EvaluationError(f"the job's metrics were measured with {old}; this machine has {provenance} "
                                  "(a retrained parent): start a new job instead of resuming this one")
        store.set_provenance(job_id, provenance)
        job_log("measured with " + ", ".join(f"{k} {v}" for k, v in provenance.items()))
    bounds = problem.bounds(space)
    known: dict[str, TrialRecord] = {}  # arch_id -> first measured trial, to reuse instead of re-measuring
    for t in history:
        if t.state != "fail":
            known.setdefault(t.arch_id, t)
    n_trials = len(history)
    n_eval = sum(t.counts_as_evaluation for t in history)
    front = RunningFront(problem)
    front.add(history)
    rnd = rounds[-1].round + 1 if rounds else 0
    if history:
        job_log(f"resuming at round {rnd} with {n_trials} trials ({n_eval} evaluations) already stored")
    idle = 0
    budget = spec.budget.evaluations
    while n_eval < budget:
        if should_stop is not None and should_stop():
            raise JobCancelled(f"job {job_id} cancelled")
        t0 = time.perf_counter()
        proposals = _strategy_step(strategy, "propose", strategy.propose, min(strategy.batch_size, budget - n_eval))
        if not proposals:
            job_log("the strategy has no new candidates: the space is exhausted")
            break
        if should_stop is not None and should_stop():  # proposing can take long (a predictor's fit):
            raise JobCancelled(f"job {job_id} cancelled")  # the unsaved round is drawn again on resume
        fresh = [p.arch for p in proposals if p.arch.arch_id not in known]
        fresh = list({a.arch_id: a for a in fresh}.values())
        results = dict(zip((a.arch_id for a in fresh), executor.evaluate(evaluator, fresh)))
        trials, new_evals = [], 0
        measurements = [m for r in results.values() for m in r.measurements]
        in_batch: dict[str, TrialRecord] = {}  # first trial of each arch in this round
        for i, p in enumerate(proposals):
            source = dict(p.source)
            aid = p.arch.arch_id
            if aid in results and aid not in in_batch:
                r = results[aid]
                metrics, error, duration = r.metrics, r.error, r.duration_s
            else:  # seen before (or twice in this batch): reuse the measurement, spend no budget
                prev = known.get(aid) or in_batch[aid]
                metrics, error, duration = prev.metrics, prev.error, 0.0
                source["cached"] = True
            trial = _make_trial(job_id, n_trials + i, rnd, p.arch, problem, metrics, error, duration, source)
            in_batch.setdefault(aid, trial)
            new_evals += trial.counts_as_evaluation
            trials.append(trial)
        front.add(trials)
        hv, best = front.summary(bounds)
        n_trials += len(trials)
        n_eval += new_evals
        rec = RoundRecord(job_id=job_id, round=rnd, n_trials=n_trials, n_evaluations=n_eval,
                          n_screened=max([int(p.source.get("screened", 0)) for p in proposals] + [len(proposals)]),
                          hypervolume=hv, best=best, seconds=time.perf_counter() - t0,
                          info={"new_evaluations": new_evals, "failed": sum(t.state == "fail" for t in trials),
                                "unmeasured": sum(t.state == "unmeasured" for t in trials)})
        stored = _measurements(measurements, job_log)
        try:
            replay = _strategy_step(strategy, "tell", strategy.tell, proposals, trials)
            state = _strategy_step(strategy, "get_state", strategy.get_state)
        except StrategyError:
            # the evaluations are done and paid for: keep them (with the last state saved) before failing
            store.save_round(job_id, owner, trials, rec, state, hypervolume=hv, measurements=stored)
            raise
        trials = [t if rep is None else TrialRecord(**{**t.to_dict(), "sampler": rep}) for t, rep in zip(trials, replay)]
        for t in trials:
            if t.state != "fail":
                known.setdefault(t.arch_id, t)
        store.save_round(job_id, owner, trials, rec, state, hypervolume=hv, measurements=stored)
        if progress:
            progress(Progress(job_id, rnd, n_eval, budget, n_trials, hv, best))
        rnd += 1
        idle = 0 if new_evals else idle + len(proposals)
        if idle >= MAX_IDLE_PROPOSALS:
            job_log(f"{idle} proposals in a row brought no new measurement (each was already evaluated or "
                    "cannot be measured); stopping", "warning")
            break
    if n_eval < budget:
        job_log(f"budget not spent: {n_eval} of {budget} evaluations", "warning")
    return front.trials


def _measurements(raw: list[dict[str, Any]], job_log: Callable[..., None]) -> list[Any]:
    """Evaluators' measurement dicts as ``latency.Measurement``; a bad one is logged, not stored."""
    if not raw:
        return []
    from latency import LatencyError, Measurement

    out = []
    for d in raw:
        try:
            m = Measurement.from_dict(d)
        except LatencyError as e:
            job_log(f"measurement of {d.get('subject')} rejected: {e}", "warning")
            continue
        if not m.ok:
            job_log(f"profiling {m.subject} on {m.target.name} failed: {m.error.splitlines()[0][:300]}", "warning")
        out.append(m)
    return out


def _make_trial(job_id: str, number: int, rnd: int, arch: Architecture, problem: Problem,
                metrics: dict[str, float] | None, error: str | None, duration: float,
                source: dict[str, Any]) -> TrialRecord:
    if metrics is None:
        return TrialRecord(job_id, number, rnd, arch.to_dict(), "fail", error=error, duration_s=duration,
                           feasible=False, source=source)
    missing = [k for k in problem.keys if k not in metrics or not math.isfinite(metrics[k])]
    if missing:
        return TrialRecord(job_id, number, rnd, arch.to_dict(), "unmeasured", metrics=metrics, feasible=False,
                           error=f"not measured: {', '.join(missing)}", duration_s=duration, source=source)
    violations = problem.violations(metrics)
    return TrialRecord(job_id, number, rnd, arch.to_dict(), "complete", values=problem.values(metrics),
                       metrics=metrics, constraints=violations or None, feasible=all(v <= 0 for v in violations),
                       duration_s=duration, source=source)


def _result(store: Store, job_id: str, problem: Problem, space: SearchSpace) -> JobResult:
    record = store.get_job(job_id)
    trials = store.load_trials(job_id)
    return JobResult(job_id=job_id, state=record.state, trials=trials, pareto=front_of(trials, problem),
                     hypervolume=record.hypervolume, database=store.display_url(),
                     objectives=[{"key": o.key, "direction": o.direction} for o in problem.objectives],
                     n_evaluations=sum(t.counts_as_evaluation for t in trials), budget=record.budget,
                     error=record.error)


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """``(path, a's value, b's value)`` at the first place two JSON values differ, else None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = _first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else (path or "spec", a, b)
