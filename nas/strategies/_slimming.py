"""Search drivers over ordered choices (widths, depths, ratios, counts): greedy slimming
(EfficientFormer V1/V2, SnapFusion) and a one-shot knapsack over additive per-choice scores
(LAPTOP-Diff). Generic over every space whose choices are ordered numbers.

Both are deterministic functions of the job's history: ``start`` replays the trials to find
where the search is, so a resumed job continues exactly where it stopped (no pickled state).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from spaces import Architecture, InvalidArchitectureError, SearchSpace

from ..errors import SpecError
from ..storage.records import TrialRecord
from ._base import Proposal, SearchContext, Strategy

__all__ = ["SlimmingStrategy", "KnapsackStrategy", "ordered_choices", "largest"]


def ordered_choices(space: SearchSpace) -> dict[str, tuple[float, ...]]:
    """The choices whose values are numbers, ascending: the ones a slimming step can lower."""
    out = {}
    for c in space.choices():
        if c.values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c.values):
            out[c.name] = tuple(sorted(c.values))
    return out


def largest(space: SearchSpace) -> Architecture:
    """Every ordered choice at its largest value (other choices at their first value)."""
    params = {c.name: (max(c.values) if c.name in ordered_choices(space) else c.values[0]) for c in space.choices()}
    return space.from_params(params)


def _with(space: SearchSpace, arch: Architecture, name: str, value: Any) -> Architecture | None:
    try:
        return space.from_params({**arch.params_dict(), name: value})
    except InvalidArchitectureError:
        return None


_COSTS = ("params", "mmacs", "latency_ms", "flops", "macs", "energy_mj")


def _valid(space: SearchSpace, params: dict[str, Any]) -> Architecture | None:
    """The architecture of ``params``, or of the space's repair of them when they break a rule
    across choices (a plan that removes every block of a U-Net stage), or None."""
    try:
        return space.from_params(params)
    except InvalidArchitectureError:
        repair = getattr(space, "repair", None)
        if repair is None:
            return None
        try:
            return space.from_params(repair(dict(params)))
        except InvalidArchitectureError:
            return None


class _OrderedStrategy(Strategy):
    """Shared set-up: the quality and cost objectives, and a space with ordered choices."""

    any_space = False

    def __init__(self, **params: Any) -> None:
        for k in ("quality", "cost"):  # objective keys; checked against the job's in start()
            if params.get(k) is not None and not isinstance(params[k], str):
                raise SpecError(f"strategy.{k}", params[k], "an objective key, e.g. latency_ms@cpu-eager")
        super().__init__(**params)

    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None:
        self.ctx, self.space = ctx, ctx.space
        self.choices = ordered_choices(self.space)
        if not self.choices:
            raise SpecError("strategy.name", self.name, "random, tpe, nsga2 or predictor-guided: "
                            f"{self.space.name} has no ordered numeric choices to slim")
        objs = ctx.problem.objectives
        # defaults: the first objective to maximise is the quality (else the first objective that
        # is not a cost: a U-Net's output error minimises too), and the first other objective to
        # minimise is the cost
        self.quality = self.params["quality"] or next(
            (o.key for o in objs if o.direction == "maximize"),
            next((o.key for o in objs if o.key.partition("@")[0] not in _COSTS), None))
        self.cost = self.params["cost"] or next((o.key for o in objs if o.direction == "minimize"
                                                 and o.key != self.quality), None)
        for field, key in (("quality", self.quality), ("cost", self.cost)):
            if key is None or key not in ctx.problem.keys:
                raise SpecError(f"strategy.{field}", key, "an objective key of the job: " + ", ".join(ctx.problem.keys))
        self.q_sign = 1.0 if next((o.direction for o in objs if o.key == self.quality), "maximize") == "maximize" else -1.0
        # the constraint on the cost, if any: slimming stops once it is met
        self.cost_max = min((c.max for c in ctx.problem.constraints if c.key == self.cost and c.max is not None),
                            default=None)
        self.seen: dict[str, TrialRecord | None] = {}
        for t in history:
            if t.state == "complete" and t.values is not None:
                self.seen[t.arch_id] = t
            else:
                self.seen.setdefault(t.arch_id, None)  # tried, not measured: never proposed again

    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]:
        for t in trials:
            if t.state == "complete" and t.values is not None:
                self.seen[t.arch_id] = t
            else:
                self.seen.setdefault(t.arch_id, None)
        return [None] * len(trials)

    def get_state(self) -> bytes:
        return b""  # everything is replayed from the trials

    def _metrics(self, arch: Architecture) -> tuple[float, float] | None:
        t = self.seen.get(arch.arch_id)
        if t is None:
            return None
        m = {**(t.metrics or {}), **(t.values or {})}
        q, c = m.get(self.quality), m.get(self.cost)
        if q is None or c is None or not (math.isfinite(q) and math.isfinite(c)):
            return None
        return self.q_sign * q, c


class SlimmingStrategy(_OrderedStrategy):
    """Greedy slimming: from the largest architecture, evaluate every one-step reduction (one
    ordered choice lowered to its next smaller value), move to the one that loses the least
    quality per unit of cost saved, and repeat, until the cost constraint is met (when the job
    has one) or nothing is left to remove. Each step is one round."""

    name = "slimming"
    defaults = {"batch_size": 64, "quality": None, "cost": None}

    def neighbours(self, arch: Architecture) -> list[tuple[str, Architecture]]:
        out = []
        for name, values in self.choices.items():
            i = values.index(arch.params[name])
            if i > 0:
                smaller = _with(self.space, arch, name, values[i - 1])
                if smaller is not None:
                    out.append((f"{name} {values[i]}->{values[i - 1]}", smaller))
        return out

    def _walk(self) -> tuple[Architecture, int, list[tuple[str, Architecture]]]:
        """Replay the path: (current architecture, step, its unmeasured reductions)."""
        current, step = largest(self.space), 0
        while True:
            if current.arch_id not in self.seen:
                return current, step, [("start", current)]
            here = self._metrics(current)
            todo = [(a, n) for a, n in self.neighbours(current) if n.arch_id not in self.seen]
            if todo or here is None:
                return current, step, todo
            if self.cost_max is not None and here[1] <= self.cost_max:
                return current, step, []  # the target is met
            best, best_key = None, None
            for action, n in self.neighbours(current):
                m = self._metrics(n)
                if m is None:
                    continue
                lost, saved = here[0] - m[0], here[1] - m[1]
                # least quality lost per cost saved; a step that saves nothing ranks last
                key = (0, lost / saved) if saved > 0 else (1, lost)
                if best_key is None or key < best_key:
                    best, best_key = n, key
            if best is None:
                return current, step, []
            current, step = best, step + 1

    def propose(self, n: int) -> list[Proposal]:
        current, step, todo = self._walk()
        return [Proposal(arch, {"strategy": self.name, "step": step, "from": current.arch_id, "action": action})
                for action, arch in todo[:n]]


class KnapsackStrategy(_OrderedStrategy):
    """One-shot knapsack (LAPTOP-Diff): score every choice value on its own (the largest
    architecture with only that choice lowered), take quality loss and cost saving as additive
    over choices, and pick one value per choice to lose the least quality within a cost budget
    (a multiple-choice knapsack, solved exactly by dynamic programming on a cost grid). The
    budgets swept are the cost constraint, when the job has one, then evenly spaced costs
    between the smallest and the largest architecture. Each round re-plans with the savings
    asked for scaled by how much the measured plans fell short of the additive model."""

    name = "knapsack"
    defaults = {"batch_size": 64, "quality": None, "cost": None, "grid": 400}
    rules = {"grid": ("int", 10, 100000)}

    def _singles(self) -> list[tuple[str, Any, Architecture]]:
        big = largest(self.space)
        out = [("", None, big)]
        for name, values in self.choices.items():
            for v in values[:-1]:
                a = _with(self.space, big, name, v)
                if a is not None:
                    out.append((name, v, a))
        return out

    def propose(self, n: int) -> list[Proposal]:
        singles = self._singles()
        todo = [(name, v, a) for name, v, a in singles if a.arch_id not in self.seen]
        if todo:
            return [Proposal(a, {"strategy": self.name, "phase": "score", "choice": name or "largest",
                                 "value": v}) for name, v, a in todo[:n]]
        base = self._metrics(singles[0][2])
        if base is None:
            return []  # the largest architecture could not be measured: nothing to score against
        options: dict[str, list[tuple[Any, float, float]]] = {}
        for name, values in self.choices.items():
            options[name] = [(values[-1], 0.0, 0.0)]
        for name, v, a in singles[1:]:
            m = self._metrics(a)
            if m is not None:
                options[name].append((v, base[0] - m[0], base[1] - m[1]))  # (value, quality lost, cost saved)
        max_saving = sum(max(s for _, _, s in opts) for opts in options.values())
        # costs are rarely additive (a narrower stage also shrinks its blocks' savings): the
        # plans measured so far say how much the model over-promises; ask for that much more
        saved = {name: {v: sv for v, _, sv in opts} for name, opts in options.items()}
        factor = 1.0
        for t in self.seen.values():
            if t is None or (t.source or {}).get("phase") != "knapsack":
                continue
            m = self._metrics(self.space.from_params(t.arch["params"]))
            promised = sum(saved[name].get(t.arch["params"][name], 0.0) for name in saved)
            if m is not None and promised > 0 and base[1] - m[1] > 0:
                factor = max(factor, promised / (base[1] - m[1]))
        budgets = []
        if self.cost_max is not None:
            budgets.append(self.cost_max)
        k = max(n, 8)
        budgets += [base[1] - max_saving * (i + 1) / (k + 1) for i in range(k)]
        out, planned = [], set()
        big = singles[0][2].params_dict()
        for b in budgets:
            pick = self._solve(options, (base[1] - b) * factor)
            if pick is None:
                continue
            arch = _valid(self.space, {**big, **pick})
            if arch is None or arch.arch_id in self.seen or arch.arch_id in planned:
                continue
            planned.add(arch.arch_id)
            out.append(Proposal(arch, {"strategy": self.name, "phase": "knapsack", "budget": round(b, 6),
                                       "correction": round(factor, 4)}))
            if len(out) >= n:
                break
        return out

    def _solve(self, options: dict[str, list[tuple[Any, float, float]]], need: float) -> dict[str, Any] | None:
        """One value per choice, total saving >= ``need``, least total quality lost (DP over a
        grid of savings; savings are rounded down, so a plan found here saves at least ``need``
        in the additive model)."""
        if need <= 0:
            return {name: opts[0][0] for name, opts in options.items()}
        grid = int(self.params["grid"])
        unit = need / grid
        # best[s] = (quality lost, picks) reaching saving bucket s (capped at grid)
        best: dict[int, tuple[float, tuple]] = {0: (0.0, ())}
        for name, opts in options.items():
            nxt: dict[int, tuple[float, tuple]] = {}
            for s, (lost, picks) in best.items():
                for v, l, saved in opts:
                    s2 = min(grid, s + max(0, int(saved / unit)))
                    cand = (lost + l, picks + ((name, v),))
                    if s2 not in nxt or cand[0] < nxt[s2][0]:
                        nxt[s2] = cand
            best = nxt
        if grid not in best:
            return None
        return dict(best[grid][1])
