"""``evolution``: the evolutionary search of "Search for Efficient LLMs" (methods §1.4), for
any space.

Generation 0 is the space's ``initial_architecture(bounds)`` (``llm-subnet``: every layer at
the ratio the job's bounds ask for, importance masks) and its mutants drawn with the initial
probabilities ``p0_ratio`` and ``p0_mask`` (no depth change). Every later generation takes
the ``top_k`` fittest architectures so far as parents and proposes ``mutants`` mutants of
random parents, ``crossovers`` crossovers of two random parents, and initial-style mutants
of the start to fill ``population``. Candidates that break a job constraint on a metric
the space computes without measuring (``space.static_metrics``: parameters, kept ratio)
are discarded before they are proposed, as the paper discards those outside its parameter
window. Fitness: feasible before infeasible (by total violation), then the non-dominated
rank of the objectives, then the first objective.

A space can supply its own operators (``llm-subnet`` mutates masks, methods §1.3):
``initial_architecture(bounds)``, ``mutate(arch, rng, p_mask=, p_ratio=, p_depth=, alpha=)``,
``crossover(a, b, rng)`` and ``fit_bounds(arch, bounds, rng)`` (moves a candidate into the
bounds, so that a mutation that changes a size a lot is repaired rather than discarded). Without them, a mutation redraws each choice with
``p_ratio`` and a crossover takes each choice from either parent.

Resume: everything is replayed from the trials (each records its generation). A generation
is drawn from ``(seed, generation)`` and the trials of the generations before it, so the last
recorded generation is drawn again on resume and its members not yet evaluated are proposed
next: a resumed job proposes what an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from spaces import Architecture, InvalidArchitectureError, RandomSuggest

from ..errors import SpecError
from ..storage.records import TrialRecord
from ._base import Proposal, SearchContext, Strategy

__all__ = ["EvolutionStrategy"]


class EvolutionStrategy(Strategy):
    name = "evolution"
    defaults = {"batch_size": 12, "population": 24, "top_k": 5, "mutants": 10, "crossovers": 6,
                "p0_mask": 0.6, "p0_ratio": 0.3, "p_mask": 0.3, "p_ratio": 0.1, "p_depth": 0.1, "alpha": 0.8}
    rules = {"population": ("int", 2, None), "top_k": ("int", 1, None), "mutants": ("int", 0, None),
             "crossovers": ("int", 0, None), "p0_mask": ("float", 0, 1), "p0_ratio": ("float", 0, 1),
             "p_mask": ("float", 0, 1), "p_ratio": ("float", 0, 1), "p_depth": ("float", 0, 1), "alpha": ("float", 0, 1)}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if p["mutants"] + p["crossovers"] > p["population"]:
            raise SpecError("strategy.population", p["population"],
                            f"at least mutants + crossovers = {p['mutants'] + p['crossovers']}")

    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None:
        self.ctx, self.space = ctx, ctx.space
        self.bounds: dict[str, tuple[float | None, float | None]] = {}
        static = set(getattr(self.space, "static_metrics", ()))
        for c in ctx.problem.constraints:
            if c.key in static:
                lo, hi = self.bounds.get(c.key, (None, None))
                self.bounds[c.key] = (c.min if lo is None else max(lo, c.min if c.min is not None else lo),
                                      c.max if hi is None else min(hi, c.max if c.max is not None else hi))
        self.seen: dict[str, TrialRecord | None] = {}
        self.queue: list[Proposal] = []
        self.generation = 0
        self.start_arch = self._initial()
        gens = [g for t in history if isinstance(g := (t.source or {}).get("generation"), int)]
        if not gens:
            for t in history:
                self._see(t)
            return
        # resume: a generation is drawn when the one before is fully told, from the trials of the
        # generations before it; so drawing the last recorded generation again from those trials
        # gives the same proposals, and the ones not evaluated yet are its remaining queue
        last = max(gens)
        for t in history:
            if not isinstance(g := (t.source or {}).get("generation"), int) or g < last:
                self._see(t)
        self.generation = last
        queue = self._draw_generation()
        for t in history:
            self._see(t)
        self.queue = [p for p in queue if p.arch.arch_id not in self.seen]
        self.generation = last + 1

    def _see(self, t: TrialRecord) -> None:
        if t.state == "complete" and t.values is not None:
            self.seen[t.arch_id] = t
        else:
            self.seen.setdefault(t.arch_id, None)  # tried, not measured: never proposed again

    # -- operators (the space's own when it has them) -------------------------------------
    def _initial(self) -> Architecture:
        if hasattr(self.space, "initial_architecture"):
            arch = self.space.initial_architecture(self.bounds)
        else:
            arch = self.space.sample(RandomSuggest(self.ctx.seed))
        fit = getattr(self.space, "fit_bounds", None) if self.bounds else None
        if fit is not None:
            fitted = fit(arch, self.bounds, random.Random(self.ctx.seed))
            if fitted is None or not self._allowed(fitted):
                # the span check passed, but the window is narrower than one step of the space's grid
                got = self.space.evaluate(arch, list(self.bounds))
                several = len(self.bounds) > 1
                raise SpecError("constraints", "; ".join(c.describe() for c in self.ctx.problem.constraints
                                                         if c.key in self.bounds),
                                ("ranges that overlap, each at least one grid step wide" if several else
                                 "a range at least one grid step wide") + "; the start architecture has "
                                + ", ".join(f"{k} {v:.6g}" for k, v in got.items()),
                                reason="no architecture of the space falls inside " + ("them all" if several else "it"))
            arch = fitted
        return arch

    def _mutate(self, arch: Architecture, rng: random.Random, p_mask: float, p_ratio: float, p_depth: float) -> Architecture | None:
        try:
            if hasattr(self.space, "mutate"):
                return self.space.mutate(arch, rng, p_mask=p_mask, p_ratio=p_ratio, p_depth=p_depth,
                                         alpha=self.params["alpha"])
            params = arch.params_dict()
            for c in self.space.choices():
                if rng.random() < max(p_ratio, p_mask):
                    params[c.name] = rng.choice(list(c.values))
            return self.space.from_params(params)
        except InvalidArchitectureError:
            # a space whose choices combine in restricted ways (a pool such as hwgpt-s): a fresh sample
            return self.space.sample(RandomSuggest(rng.randrange(2**32)))

    def _crossover(self, a: Architecture, b: Architecture, rng: random.Random) -> Architecture | None:
        try:
            if hasattr(self.space, "crossover"):
                return self.space.crossover(a, b, rng)
            pa, pb = a.params_dict(), b.params_dict()
            return self.space.from_params({k: (pa if rng.random() < 0.5 else pb).get(k, pa.get(k)) for k in pa})
        except InvalidArchitectureError:
            return None

    def _allowed(self, arch: Architecture) -> bool:
        if not self.bounds:
            return True
        values = self.space.evaluate(arch, list(self.bounds))
        return all((lo is None or values[k] >= lo) and (hi is None or values[k] <= hi)
                   for k, (lo, hi) in self.bounds.items())

    # -- fitness ------------------------------------------------------------------------------
    def _ranked(self) -> list[Architecture]:
        from ..pareto import nondominated_rank

        done = [t for t in self.seen.values() if t is not None]
        if not done:
            return []
        objs = self.ctx.problem.objectives
        sign = np.array([1.0 if o.direction == "minimize" else -1.0 for o in objs])
        vals = np.array([[t.values.get(o.key, math.inf) for o in objs] for t in done], dtype=float) * sign
        vals = np.where(np.isfinite(vals), vals, 1e300)
        rank = nondominated_rank(vals)
        viol = np.array([sum(max(0.0, v) for v in (t.constraints or [])) for t in done])
        order = sorted(range(len(done)), key=lambda i: (viol[i], rank[i], vals[i, 0], done[i].arch_id))
        return [Architecture.from_dict(done[i].arch) for i in order]

    # -- rounds ---------------------------------------------------------------------------------
    def _draw_generation(self) -> list[Proposal]:
        p, g = self.params, self.generation
        rng = random.Random(self.ctx.seed * 7919 + g)
        out: list[Proposal] = []
        ids = set(self.seen)

        fit = getattr(self.space, "fit_bounds", None) if self.bounds else None

        def add(arch: Architecture | None, op: str, parents: Sequence[Architecture]) -> None:
            if arch is not None and fit is not None:  # moved into the bounds rather than discarded
                arch = fit(arch, self.bounds, rng)
            if arch is None or arch.arch_id in ids or not self._allowed(arch):
                return
            ids.add(arch.arch_id)
            out.append(Proposal(arch, {"strategy": self.name, "generation": g, "op": op,
                                       "parents": [a.arch_id for a in parents]}))

        start = self.start_arch
        parents = self._ranked()[:p["top_k"]] if g else []
        if not parents:  # generation 0: the start and its initial-style mutants
            add(start, "initial", [])
        else:
            for _ in range(20 * p["mutants"]):
                if sum(1 for x in out if x.source["op"] == "mutate") >= p["mutants"]:
                    break
                a = rng.choice(parents)
                add(self._mutate(a, rng, p["p_mask"], p["p_ratio"], p["p_depth"]), "mutate", [a])
            for _ in range(20 * p["crossovers"]):
                if sum(1 for x in out if x.source["op"] == "crossover") >= p["crossovers"]:
                    break
                a, b = rng.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
                add(self._crossover(a, b, rng), "crossover", [a, b])
        for _ in range(20 * p["population"]):
            if len(out) >= p["population"]:
                break
            add(self._mutate(start, rng, p["p0_mask"], p["p0_ratio"], 0.0), "initial", [start])
        if not out and not self._allowed(start):
            self.ctx.log(f"evolution: no candidate meets the bounds {self.bounds} in generation {g}")
        return out

    def propose(self, n: int) -> list[Proposal]:
        if not self.queue:
            for _ in range(3):  # a generation whose draws were all seen already: draw the next
                self.queue = self._draw_generation()
                self.generation += 1
                if self.queue:
                    break
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]:
        for t in trials:
            self._see(t)
        return [None] * len(trials)

    def get_state(self) -> bytes:
        return b""  # replayed from the trials
