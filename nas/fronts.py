"""Pareto fronts kept up to date as trials arrive.

Trials are only ever appended (never updated), and a trial once dominated stays dominated, so
the front of all trials is the front of the previous front and the new trials: a round costs
the size of the front, not of the job's history. ``RunningFront`` is the engine's (over the
records it has just made); ``StoredFronts`` is the readers' (the API's), over the store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from .pareto import normalized_hypervolume, pareto_front
from .problem import Problem
from .storage import Store, TrialRecord

__all__ = ["RunningFront", "StoredFronts", "front_of"]


def front_of(trials: list[TrialRecord], problem: Problem) -> list[TrialRecord]:
    """The complete, feasible trials no other dominates; the first trial of an architecture
    stands for it (a re-used measurement is not a second point)."""
    ok, seen = [], set()
    for t in trials:
        if t.state == "complete" and t.feasible and t.arch_id not in seen:
            seen.add(t.arch_id)
            ok.append(t)
    if not ok:
        return []
    values = np.array([problem.vector(t.values) for t in ok])
    return [ok[i] for i in sorted(pareto_front(values, problem.directions))]


class RunningFront:
    """The Pareto front of a job's trials and the range of their objectives, kept round by round.

    The front of all trials is the front of the previous front and the new trials (a trial
    once dominated stays dominated), so a round costs the size of the front, not of the job's
    history: at 20,000 trials recomputing it from scratch was two thirds of a runner's time.
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.trials: list[TrialRecord] = []
        self._seen: set[str] = set()
        self._lo = self._hi = None  # per-objective range of every complete trial (feasible or not)

    def add(self, trials: list[TrialRecord]) -> None:
        complete = [t for t in trials if t.state == "complete"]
        if not complete:
            return
        v = np.array([self.problem.vector(t.values) for t in complete])
        lo, hi = v.min(axis=0), v.max(axis=0)
        self._lo = lo if self._lo is None else np.minimum(self._lo, lo)
        self._hi = hi if self._hi is None else np.maximum(self._hi, hi)
        new = [t for t in complete if t.feasible and t.arch_id not in self._seen]
        self._seen.update(t.arch_id for t in new)
        if new:
            self.trials = front_of(self.trials + new, self.problem)

    def summary(self, bounds: tuple[np.ndarray, np.ndarray] | None) -> tuple[float | None, dict[str, float]]:
        """The front's hypervolume (normalised by ``bounds``, else by the range seen) and best values."""
        if not self.trials:
            return None, {}
        problem = self.problem
        values = np.array([problem.vector(t.values) for t in self.trials])
        best = {o.key: float(values[:, j].max() if o.direction == "maximize" else values[:, j].min())
                for j, o in enumerate(problem.objectives)}
        lo, hi = bounds if bounds is not None else (self._lo, self._hi)  # per-objective min/max, own units
        worst = np.where(np.array(problem.directions) == "maximize", lo, hi)
        bestb = np.where(np.array(problem.directions) == "maximize", hi, lo)
        return normalized_hypervolume(values, problem.directions, bestb, worst), best


class StoredFronts:
    """The Pareto fronts of stored jobs, each extended with the trials written since it was last
    asked for (read by trial number, objective values only); only the front's rows are loaded.
    The same trials as ``front_of`` over all of a job's trials, at a fraction of the cost: the
    first request of a 100,000-trial job reads 100,000 small values, a poll of a running job
    the last round's. Thread-safe; remembers ``max_jobs`` jobs."""

    def __init__(self, store: Store, max_jobs: int = 32) -> None:
        self.store, self.max_jobs = store, max_jobs
        self._jobs: OrderedDict[str, _StoredFront] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str, n_trials: int, problem: Problem) -> list[TrialRecord]:
        """The front of the job's trials numbered below ``n_trials`` (its counter, read first)."""
        with self._lock:
            state = self._jobs.pop(job_id, None)
            if state is None or state.n > n_trials or state.problem != problem:
                state = _StoredFront(problem)
            keys = [o.key for o in problem.objectives]
            for trial_id, arch_id, *vector in self.store.feasible_values(job_id, keys, start=state.n, stop=n_trials):
                state.offer(trial_id, arch_id, vector)
            state.settle(n_trials)
            self._jobs[job_id] = state
            while len(self._jobs) > self.max_jobs:
                self._jobs.popitem(last=False)
            ids = list(state.ids)
        return self.store.trials_by_id(ids)


class _StoredFront:
    def __init__(self, problem: Problem) -> None:
        self.problem, self.n = problem, 0
        self.seen: set[str] = set()
        self.ids: list[int] = []  # the front's trial ids, in trial order
        self.vectors = np.zeros((0, len(problem.objectives)))
        self._new_ids: list[int] = []
        self._new_vectors: list[list[float]] = []

    def offer(self, trial_id: int, arch_id: str, vector: list[float]) -> None:
        if arch_id not in self.seen:
            self.seen.add(arch_id)
            self._new_ids.append(trial_id)
            self._new_vectors.append(vector)

    def settle(self, n_trials: int) -> None:
        self.n = n_trials
        if not self._new_ids:
            return
        ids = self.ids + self._new_ids
        vectors = np.vstack([self.vectors, np.array(self._new_vectors)])
        keep = sorted(pareto_front(vectors, self.problem.directions))
        self.ids, self.vectors = [ids[i] for i in keep], vectors[keep]
        self._new_ids, self._new_vectors = [], []
