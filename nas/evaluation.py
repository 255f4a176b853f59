"""Evaluators (what a trial measures) and executors (where evaluations run: Ray Tune or inline)."""

from __future__ import annotations

import abc
import json
import os
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from spaces import Architecture, SearchSpace, TabularSpace

from .errors import EvaluationError

__all__ = ["Evaluator", "Evaluation", "TabularEvaluator", "ProfilingEvaluator", "CompositeEvaluator",
           "SpaceEvaluator", "make_evaluator", "EvalResult", "Executor", "InlineExecutor", "RayTuneExecutor", "make_executor"]


@dataclass(frozen=True)
class Evaluation:
    """What an evaluator may return instead of a plain dict: the metrics plus the latency
    Measurements behind them (as ``Measurement.to_dict()``), which the driver stores."""

    metrics: dict[str, float]
    measurements: tuple[dict[str, Any], ...] = ()


class Evaluator(abc.ABC):
    """Measures one architecture: returns ``{metric key: value}`` or an :class:`Evaluation`.

    Contract: picklable (shipped to Ray workers), no side effects on the database
    (workers never write; the driver is the single writer), may raise on failure. A key
    missing from the result means "not measured".
    """

    @abc.abstractmethod
    def __call__(self, arch: Architecture) -> dict[str, float] | Evaluation: ...


def _split(out: dict[str, float] | Evaluation) -> tuple[dict[str, float], tuple[dict[str, Any], ...]]:
    return (out.metrics, out.measurements) if isinstance(out, Evaluation) else (out, ())


class TabularEvaluator(Evaluator):
    """Reads the externally measured table of a tabular space."""

    def __init__(self, space: TabularSpace, keys: Sequence[str]) -> None:
        self.space, self.keys = space, tuple(keys)

    def __call__(self, arch: Architecture) -> dict[str, float]:
        return self.space.lookup(arch, self.keys)


class SpaceEvaluator(Evaluator):
    """Asks the space to measure the architecture itself (inherited-weight quality)."""

    def __init__(self, space: SearchSpace, keys: Sequence[str]) -> None:
        self.space, self.keys = space, tuple(keys)

    def __call__(self, arch: Architecture) -> dict[str, float]:
        return self.space.evaluate(arch, self.keys)


class ProfilingEvaluator(Evaluator):
    """Profiles the architecture's network on this machine, one Measurement per profiled key
    (``latency_ms@cpu-ort``: the built-in Target ``cpu-ort``, ONNX Runtime).

    Profiling runs one at a time per machine (a file lock), whatever the executor's
    concurrency: two networks timed side by side on two cores would time each other. A
    network that fails to export or compile leaves its key out (the trial is unmeasured)
    and its Measurement records why.
    """

    def __init__(self, space: SearchSpace, keys: Sequence[str], protocol: dict[str, Any] | None = None) -> None:
        self.space, self.keys, self.protocol = space, tuple(keys), dict(protocol or {})

    def __call__(self, arch: Architecture) -> Evaluation:
        from latency import get_target
        from latency.profilers import get_profiler

        subjects = self.space.profiling_subjects(arch, self.keys)  # built before the lock
        metrics: dict[str, float] = {}
        measurements = []
        with _machine_lock():
            for key in self.keys:
                module, inputs = subjects[key]
                target = get_target(key.partition("@")[2])
                m = get_profiler(target.backend, **self.protocol).profile(module, target, inputs,
                                                                          subject_id=arch.arch_id)
                measurements.append(m.to_dict())
                if m.ok:
                    metrics[key] = m.median_ms
        return Evaluation(metrics, tuple(measurements))


class _machine_lock:
    """An exclusive ``flock`` on ``$NAS_CACHE_DIR/profile.lock`` (``~/.cache/nas``)."""

    def __enter__(self):
        import fcntl

        base = os.environ.get("NAS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nas")
        os.makedirs(base, exist_ok=True)
        self._f = open(os.path.join(base, "profile.lock"), "w")  # noqa: SIM115 - held until __exit__
        fcntl.flock(self._f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self._f, fcntl.LOCK_UN)
        self._f.close()


class CompositeEvaluator(Evaluator):
    """Several evaluators, each for its own keys; the metrics and measurements are merged."""

    def __init__(self, parts: Sequence[Evaluator]) -> None:
        self.parts = tuple(parts)

    def __call__(self, arch: Architecture) -> Evaluation:
        metrics: dict[str, float] = {}
        measurements: list[dict[str, Any]] = []
        for part in self.parts:
            m, ms = _split(part(arch))
            metrics.update(m)
            measurements.extend(ms)
        return Evaluation(metrics, tuple(measurements))


def make_evaluator(space: SearchSpace, keys: Sequence[str], profile: dict[str, Any] | None = None) -> Evaluator:
    from spaces import is_profiled

    profiled = [k for k in keys if is_profiled(k)]
    rest = [k for k in keys if not is_profiled(k)]
    parts: list[Evaluator] = []
    if rest:
        if isinstance(space, TabularSpace):
            parts.append(TabularEvaluator(space, rest))
        elif space.has_evaluator():
            parts.append(SpaceEvaluator(space, rest))
        else:
            raise EvaluationError(f"space {space.name!r} has no evaluator yet")
    if profiled:
        parts.append(ProfilingEvaluator(space, profiled, profile))
    return parts[0] if len(parts) == 1 else CompositeEvaluator(parts)


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float] | None
    error: str | None
    duration_s: float
    measurements: tuple[dict[str, Any], ...] = ()


def _evaluate_one(evaluator: Evaluator, arch: Architecture) -> EvalResult:
    t0 = time.perf_counter()
    try:
        metrics, measurements = _split(evaluator(arch))
        return EvalResult(metrics, None, time.perf_counter() - t0, measurements)
    except Exception as e:  # a failing candidate is a failed trial, not a failed job
        msg = "".join(traceback.format_exception_only(type(e), e)).strip()
        return EvalResult(None, msg, time.perf_counter() - t0)


class Executor(abc.ABC):
    """Runs a batch of evaluations and returns the results in the order of ``archs``.

    Contract: a failing evaluation becomes an ``EvalResult`` with ``error`` set (after the
    executor's retries); only a failure of the executor itself raises ``EvaluationError``.
    """

    name: str

    @abc.abstractmethod
    def evaluate(self, evaluator: Evaluator, archs: Sequence[Architecture]) -> list[EvalResult]: ...

    def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to whatever runs the evaluations; raises ``EvaluationError`` if it cannot."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class InlineExecutor(Executor):
    """Evaluates in the driver process: for cheap (tabular) evaluations, tests and benchmarks."""

    name = "inline"

    def evaluate(self, evaluator: Evaluator, archs: Sequence[Architecture]) -> list[EvalResult]:
        return [_evaluate_one(evaluator, a) for a in archs]


def _tune_trainable(config: dict[str, Any], evaluator: Evaluator = None, archs: list = None) -> dict[str, Any]:
    arch = Architecture.from_dict(archs[config["index"]])
    t0 = time.perf_counter()
    metrics, measurements = _split(evaluator(arch))  # raising lets Tune retry the trial (FailureConfig)
    return {"metrics_json": json.dumps(metrics), "measurements_json": json.dumps(list(measurements)),
            "eval_seconds": time.perf_counter() - t0}


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a Ray address nothing listens on: ``ray.init`` would retry for many minutes."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():  # "auto", "local" and the like: let Ray resolve them
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise EvaluationError(f"RAY_ADDRESS: got {address!r}, but nothing answers there ({e}); valid: the "
                              "address of a running Ray head (`ray start --head`), or unset for a local Ray") from e


class RayTuneExecutor(Executor):
    """Each batch is one Ray Tune experiment: one Tune trial per architecture.

    Local Ray by default; the cluster at ``$RAY_ADDRESS`` when set. Failed Tune trials are
    retried ``max_retries`` times (a worker killed mid-evaluation is retried, not lost).
    """

    name = "ray"

    def __init__(self, max_concurrent: int = 2, max_retries: int = 2, address: str | None = None) -> None:
        self.max_concurrent, self.max_retries = max_concurrent, max_retries
        self.address = address if address is not None else os.environ.get("RAY_ADDRESS")
        self._started = False
        self._tmp = tempfile.TemporaryDirectory(prefix="nas-tune-")

    def start(self) -> None:
        self._ensure_ray()

    def _ensure_ray(self) -> None:
        if self._started:
            return
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        # Tune swallows Ctrl-C by default (it stops the experiment and returns): let it reach
        # the engine, which marks the job cancelled and leaves it resumable
        os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(self.max_concurrent))
        try:
            import ray
        except ImportError as e:  # pragma: no cover - depends on the install
            raise EvaluationError("Ray is not installed: pip install 'nas-service[search]'") from e
        if self.address:
            _check_reachable(self.address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                                          ignore_reinit_error=True)
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = max(self.max_concurrent, 1)
            try:
                ray.init(**kwargs)
            except Exception as e:
                where = f"the cluster at RAY_ADDRESS={self.address}" if self.address else "a local Ray instance"
                raise EvaluationError(f"cannot start or reach {where}: {e}") from e
        self._started = True

    def evaluate(self, evaluator: Evaluator, archs: Sequence[Architecture]) -> list[EvalResult]:
        if not archs:
            return []
        self._ensure_ray()
        from ray import tune

        payload = [a.to_dict() for a in archs]
        trainable = tune.with_parameters(_tune_trainable, evaluator=evaluator, archs=payload)
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"index": tune.grid_search(list(range(len(payload))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=self.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=self._tmp.name, verbose=0, log_to_file=False,
                                      failure_config=tune.FailureConfig(max_failures=self.max_retries)),
        )
        grid = self._fit_interruptibly(tuner)
        out: list[EvalResult | None] = [None] * len(archs)
        for result in grid:
            if not result.config or "index" not in result.config:
                continue  # a trial Tune never started: reported below as not run
            i = result.config["index"]
            if result.error is not None or "metrics_json" not in (result.metrics or {}):
                err = result.error
                out[i] = EvalResult(None, f"{type(err).__name__}: {err}" if err else "no result", 0.0)
            else:
                out[i] = EvalResult(json.loads(result.metrics["metrics_json"]), None,
                                    float(result.metrics.get("eval_seconds", 0.0)),
                                    tuple(json.loads(result.metrics.get("measurements_json", "[]"))))
        return [r if r is not None else EvalResult(None, "trial did not run", 0.0) for r in out]

    @staticmethod
    def _fit_interruptibly(tuner):
        """``tuner.fit()``, but Ctrl-C always ends in ``KeyboardInterrupt``.

        Tune may catch the interrupt and return a partial result; a partial batch must not
        be stored as failed trials, so the flag set here turns it back into an interrupt
        (the round is then not saved, and ``--resume`` proposes it again).
        """
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return tuner.fit()
        interrupted: list[bool] = []

        def on_signal(signum, frame):
            interrupted.append(True)
            raise KeyboardInterrupt

        # SIGTERM too (docker stop, Kubernetes): Ray's own handler would kill the driver mid-write
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            grid = tuner.fit()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if interrupted:
            raise KeyboardInterrupt
        return grid

    def close(self) -> None:
        self._tmp.cleanup()


def make_executor(backend: str, max_concurrent: int = 2, max_retries: int = 2) -> Executor:
    if backend == "inline":
        return InlineExecutor()
    if backend == "ray":
        return RayTuneExecutor(max_concurrent=max_concurrent, max_retries=max_retries)
    raise EvaluationError(f"execution.backend: got {backend!r}; valid: ray, inline")
