"""``predictor-guided``: screen large candidate batches with a predictor, evaluate the best few.

Each round: fit the predictor on every labelled trial (objectives as minimisation, scaled to
[0, 1] by what has been seen, plus the constraint metrics), predict the whole candidate pool
(the table for a tabular space, else ``candidates`` random samples), drop candidates predicted
to break a constraint, and pick the batch by greedy hypervolume improvement over the current
front: half on the predicted mean (exploit), half on an optimistic bound ``mean - kappa * std``
over the forest's trees (explore: labels where the predictor is unsure near the front), as
AceNAS splits its active-labelling rounds. The first ``init`` labels are uniform random.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from spaces import Architecture, RandomSuggest, TabularSpace

from ..errors import SpecError
from ..pareto import _hv_min, nondominated_rank
from ..storage.records import TrialRecord
from ._base import Proposal, SearchContext, Strategy

__all__ = ["PredictorGuidedStrategy"]


class PredictorGuidedStrategy(Strategy):
    name = "predictor-guided"
    defaults = {"batch_size": 10, "init": 10, "candidates": 4096, "predictor": "rf", "n_estimators": 100,
                "explore_fraction": 0.5, "kappa": 1.0}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from predictors import list_predictors

        if self.params["predictor"] not in list_predictors():
            raise SpecError("strategy.predictor", self.params["predictor"], ", ".join(list_predictors()))
        if not 0.0 <= float(self.params["explore_fraction"]) <= 1.0:
            raise SpecError("strategy.explore_fraction", self.params["explore_fraction"], "a number in [0, 1]")
        for key in ("init", "candidates", "n_estimators"):
            if not isinstance(self.params[key], int) or self.params[key] < 1:
                raise SpecError(f"strategy.{key}", self.params[key], "an integer >= 1")

    # -- lifecycle -----------------------------------------------------------------
    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None:
        self.ctx = ctx
        saved = pickle.loads(state) if state is not None else {}
        self.rng = np.random.default_rng(ctx.seed)
        if "rng" in saved:
            self.rng.bit_generator.state = saved["rng"]
        self.round = saved.get("round", 0)
        space = ctx.space
        self.tabular = isinstance(space, TabularSpace)
        if self.tabular:
            self.pool = space.enumerate()
            self.pool_X = space.encoded_table()
            # "not measured" is known for a table: never propose what cannot be evaluated
            self.available = np.ones(len(self.pool), dtype=bool)
            for key in ctx.problem.keys:
                self.available &= np.isfinite(space.metric_array(key))
            self.seen_mask = np.zeros(len(self.pool), dtype=bool)
        self.seen: set[str] = set()
        self.labelled: list[TrialRecord] = []
        for t in history:
            self._remember(t)

    def _remember(self, t: TrialRecord) -> None:
        self.seen.add(t.arch_id)
        if self.tabular:
            self.seen_mask[self.ctx.space.index_of(Architecture.from_dict(t.arch))] = True
        if t.state == "complete":
            self.labelled.append(t)

    def get_state(self) -> bytes:
        return pickle.dumps({"rng": self.rng.bit_generator.state, "round": self.round})

    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]:
        for t in trials:
            self._remember(t)
        self.round += 1
        return [None] * len(trials)

    # -- proposals -----------------------------------------------------------------
    def _candidates(self) -> tuple[list[Architecture], np.ndarray]:
        if self.tabular:
            idx = np.flatnonzero(self.available & ~self.seen_mask)
            return [self.pool[i] for i in idx], self.pool_X[idx]
        suggest = RandomSuggest(self.rng)
        archs: dict[str, Architecture] = {}
        for _ in range(self.params["candidates"]):
            a = self.ctx.space.sample(suggest)
            if a.arch_id not in self.seen:
                archs.setdefault(a.arch_id, a)
        cands = list(archs.values())
        return cands, self.ctx.space.encode(cands)

    def propose(self, n: int) -> list[Proposal]:
        cands, X = self._candidates()
        if not cands:
            return []
        n = min(n, len(cands))
        if len(self.labelled) < self.params["init"]:
            pick = self.rng.choice(len(cands), size=n, replace=False)
            return [Proposal(cands[i], {"strategy": self.name, "pick": "random-init", "round": self.round,
                                        "labels": len(self.labelled)}) for i in pick]
        return self._model_based(cands, X, n)

    def _targets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        prob = self.ctx.problem
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in prob.directions])
        Y = np.array([prob.vector(t.values) for t in self.labelled]) * sign
        C = np.array([[t.metrics[c.key] for c in prob.constraints] for t in self.labelled]).reshape(len(Y), -1)
        T = np.hstack([Y, C])
        lo, hi = T.min(axis=0), T.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        return (T - lo) / span, lo, span

    def _model_based(self, cands: list[Architecture], X: np.ndarray, n: int) -> list[Proposal]:
        from predictors import get_predictor

        prob = self.ctx.problem
        m = len(prob.objectives)
        Z, lo, span = self._targets()
        X_lab = self.ctx.space.encode([Architecture.from_dict(t.arch) for t in self.labelled])
        model = get_predictor(self.params["predictor"], n_estimators=self.params["n_estimators"],
                              random_state=self.ctx.seed * 1009 + self.round)
        model.fit(X_lab, Z if Z.shape[1] > 1 else Z[:, 0])
        mean, std = model.predict_dist(X)

        # constraints: predicted metric (back in its own units) against the bounds
        ok = np.ones(len(cands), dtype=bool)
        for j, c in enumerate(prob.constraints):
            pred = mean[:, m + j] * span[m + j] + lo[m + j]
            violation = np.array([c.violation(v) for v in pred])
            ok &= violation <= 0
        pool = np.flatnonzero(ok) if ok.any() else np.arange(len(cands))

        feasible_lab = np.array([t.feasible for t in self.labelled])
        front = Z[feasible_lab, :m] if feasible_lab.any() else np.empty((0, m))
        ref = np.full(m, 1.1)
        n_explore = int(round(n * float(self.params["explore_fraction"])))
        chosen: list[tuple[int, str]] = []
        for mode, k in (("exploit", n - n_explore), ("explore", n_explore)):
            pts = mean[:, :m] if mode == "exploit" else mean[:, :m] - float(self.params["kappa"]) * std[:, :m]
            taken = {i for i, _ in chosen}
            for i in self._greedy_hvi(pts, pool, front, k, ref, taken, std[:, :m].sum(axis=1)):
                chosen.append((i, mode))
        out = []
        for i, mode in chosen:
            predicted = {o.key: float((mean[i, j] * span[j] + lo[j]) * (-1 if o.direction == "maximize" else 1))
                         for j, o in enumerate(prob.objectives)}
            out.append(Proposal(cands[i], {"strategy": self.name, "pick": mode, "round": self.round,
                                           "predictor": self.params["predictor"], "labels": len(self.labelled),
                                           "screened": len(cands), "predicted": predicted}))
        return out

    @staticmethod
    def _greedy_hvi(pts: np.ndarray, pool: np.ndarray, front: np.ndarray, k: int, ref: np.ndarray,
                    taken: set[int], spread: np.ndarray) -> list[int]:
        """Pick ``k`` pool rows, each maximising hypervolume improvement over front + picks so far."""
        if k <= 0:
            return []
        pool = np.array([i for i in pool if i not in taken], dtype=np.int64)
        if len(pool) == 0:
            return []
        # screening: the leading predicted non-dominated layers are the only serious contenders
        short = pool
        if len(pool) > 100:
            best_any = np.unique(np.concatenate([np.argsort(pts[pool, j])[:100] for j in range(pts.shape[1])]))
            short = pool[best_any]
            rank = nondominated_rank(pts[short], max_rank=8)
            keep = np.argsort(rank, kind="stable")[:max(3 * k, 60)]
            short = short[keep]
        picks: list[int] = []
        current = front.copy()
        for _ in range(k):
            base = _hv_min(current, ref) if len(current) else 0.0
            gains = np.array([(_hv_min(np.vstack([current, pts[i]]), ref) if len(current) else
                               _hv_min(pts[i][None], ref)) - base if i not in picks else -1.0 for i in short])
            if gains.max() <= 1e-12:  # nothing predicted to improve: ask where the forest is least sure
                rest = [i for i in short if i not in picks] or [i for i in pool if i not in picks]
                if not rest:
                    break
                best = int(rest[int(np.argmax(spread[rest]))])
            else:
                best = int(short[int(np.argmax(gains))])
            picks.append(best)
            current = np.vstack([current, pts[best]]) if len(current) else pts[best][None]
        return picks
