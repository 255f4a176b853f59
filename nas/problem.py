"""Objectives and constraints resolved against a space: what a trial is scored on."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from spaces import SearchSpace, SpacesError, TabularSpace, is_profiled

from .errors import SpecError
from .spec import JobSpec

__all__ = ["Objective", "Constraint", "Problem"]


@dataclass(frozen=True)
class Objective:
    key: str  # metric key, e.g. "latency_ms@raspi4"
    direction: str  # "minimize" | "maximize"


@dataclass(frozen=True)
class Constraint:
    key: str
    min: float | None = None
    max: float | None = None

    def violation(self, value: float | None) -> float:
        """Optuna's convention: <= 0 is satisfied; an unmeasured value violates."""
        if value is None or not math.isfinite(value):
            return math.inf
        v = -math.inf
        if self.max is not None:
            v = max(v, value - self.max)
        if self.min is not None:
            v = max(v, self.min - value)
        return float(v)

    def violations(self, values: np.ndarray) -> np.ndarray:
        """``violation`` over an array at once (screening scores thousands of predictions)."""
        v = np.full(np.shape(values), -np.inf)
        if self.max is not None:
            v = np.maximum(v, values - self.max)
        if self.min is not None:
            v = np.maximum(v, self.min - values)
        return np.where(np.isfinite(values), v, np.inf)

    def describe(self) -> str:
        lo = f"{self.min} <= " if self.min is not None else ""
        hi = f" <= {self.max}" if self.max is not None else ""
        return f"{lo}{self.key}{hi}"


@dataclass(frozen=True)
class Problem:
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        """Every metric a trial must report: objectives first, then constraint-only metrics."""
        out = [o.key for o in self.objectives]
        out += [c.key for c in self.constraints if c.key not in out]
        return tuple(dict.fromkeys(out))

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def values(self, metrics: Mapping[str, float]) -> dict[str, float]:
        return {o.key: float(metrics[o.key]) for o in self.objectives}

    def vector(self, values: Mapping[str, float]) -> list[float]:
        return [float(values[o.key]) for o in self.objectives]

    def violations(self, metrics: Mapping[str, float]) -> list[float]:
        return [c.violation(metrics.get(c.key)) for c in self.constraints]

    @staticmethod
    def resolve(spec: JobSpec, space: SearchSpace) -> Problem:
        """Check every objective and constraint against the space; errors name the field."""
        infos = space.metrics()
        objectives = []
        for i, o in enumerate(spec.objectives):
            try:
                key = space.resolve_metric(o.name, o.device, field=f"objectives[{i}]")
            except SpacesError as e:
                raise SpecError(e.field, e.given, e.valid) from None
            objectives.append(Objective(key, o.direction or infos[o.name].direction))
        constraints = []
        for i, c in enumerate(spec.constraints):
            try:
                key = space.resolve_metric(c.name, c.device, field=f"constraints[{i}]")
            except SpacesError as e:
                raise SpecError(e.field, e.given, e.valid) from None
            constraints.append(Constraint(key, c.min, c.max))
        problem = Problem(tuple(objectives), tuple(constraints))
        if isinstance(space, TabularSpace) and constraints:
            problem._check_feasible(space)
        elif constraints and getattr(space, "static_metrics", ()):
            problem._check_static_range(space)
        return problem

    def _check_static_range(self, space: SearchSpace) -> None:
        """Sizes the space computes without measuring (parameters, kept ratio) grow from its
        smallest to its largest architecture: refuse a range outside that span."""
        static = set(space.static_metrics)  # type: ignore[attr-defined]
        checked = [(i, c) for i, c in enumerate(self.constraints) if c.key in static]
        if not checked:
            return
        for i, c in checked:
            if hasattr(space, "static_range"):  # a space that knows the span without building architectures
                lo, hi = space.static_range(c.key)
            else:
                lo, hi = (space.evaluate(a, [c.key])[c.key] for a in (space.smallest(), space.largest()))  # type: ignore[attr-defined]
            if (c.max is not None and c.max < lo) or (c.min is not None and c.min > hi):
                raise SpecError(f"constraints[{i}]", c.describe(), f"{c.key} ranges from {lo:.6g} (smallest "
                                f"architecture) to {hi:.6g} (largest) in this space",
                                reason="no architecture can meet it")

    def _check_feasible(self, space: TabularSpace) -> None:
        """A tabular space knows every value: refuse constraints no architecture meets."""
        ok = np.ones(len(space.enumerate()), dtype=bool)
        for i, c in enumerate(self.constraints):
            if is_profiled(c.key):  # measured during the job: nothing to check beforehand
                continue
            col = space.metric_array(c.key)
            alone = np.isfinite(col) & (col <= (c.max if c.max is not None else np.inf)) & \
                (col >= (c.min if c.min is not None else -np.inf))
            if not alone.any():
                finite = col[np.isfinite(col)]
                raise SpecError(f"constraints[{i}]", c.describe(), f"{c.key} ranges from {finite.min():.6g} to "
                                f"{finite.max():.6g} in this space", reason="no architecture can meet it")
            ok &= alone
        if not ok.any():
            raise SpecError("constraints", "; ".join(c.describe() for c in self.constraints),
                            "constraints that at least one architecture meets together",
                            reason="no architecture meets all of them at once")

    def bounds(self, space: SearchSpace) -> tuple[np.ndarray, np.ndarray] | None:
        """Each objective's (min, max) over a tabular space's whole table, else None."""
        if not isinstance(space, TabularSpace) or any(is_profiled(o.key) for o in self.objectives):
            return None
        cols = [space.metric_array(o.key) for o in self.objectives]
        return np.array([np.nanmin(c) for c in cols]), np.array([np.nanmax(c) for c in cols])

    def describe(self) -> dict[str, object]:
        return {"objectives": [o.__dict__ for o in self.objectives],
                "constraints": [c.describe() for c in self.constraints]}


def objective_matrix(problem: Problem, values: Sequence[Mapping[str, float]]) -> np.ndarray:
    return np.array([problem.vector(v) for v in values], dtype=np.float64).reshape(len(values), len(problem.objectives))
