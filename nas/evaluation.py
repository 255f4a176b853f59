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

__all__ = ["Evaluator", "TabularEvaluator", "make_evaluator", "EvalResult", "Executor", "InlineExecutor",
           "RayTuneExecutor", "make_executor"]


class Evaluator(abc.ABC):
    """Measures one architecture: returns ``{metric key: value}``.

    Contract: picklable (shipped to Ray workers), no side effects on the database
    (workers never write; the driver is the single writer), may raise on failure. A key
    missing from the result means "not measured".
    """

    @abc.abstractmethod
    def __call__(self, arch: Architecture) -> dict[str, float]: ...


class TabularEvaluator(Evaluator):
    """Reads the externally measured table of a tabular space."""

    def __init__(self, space: TabularSpace, keys: Sequence[str]) -> None:
        self.space, self.keys = space, tuple(keys)

    def __call__(self, arch: Architecture) -> dict[str, float]:
        return self.space.lookup(arch, self.keys)


def make_evaluator(space: SearchSpace, keys: Sequence[str]) -> Evaluator:
    if isinstance(space, TabularSpace):
        return TabularEvaluator(space, keys)
    raise EvaluationError(f"space {space.name!r} has no evaluator yet")


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float] | None
    error: str | None
    duration_s: float


def _evaluate_one(evaluator: Evaluator, arch: Architecture) -> EvalResult:
    t0 = time.perf_counter()
    try:
        metrics = evaluator(arch)
        return EvalResult(metrics, None, time.perf_counter() - t0)
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
    metrics = evaluator(arch)  # raising lets Tune retry the trial (FailureConfig)
    return {"metrics_json": json.dumps(metrics), "eval_seconds": time.perf_counter() - t0}


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
                                    float(result.metrics.get("eval_seconds", 0.0)))
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
