"""Optuna samplers as strategies (``random``, ``tpe``, ``nsga2``), driven through ask/tell in batches.

The study lives in memory; our SQL store is the record. On resume the study is rebuilt by
replaying each stored trial (params, distributions, system attributes) and the sampler is
unpickled from the state saved with the last round, so its random state continues exactly.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from ..storage.records import TrialRecord
from ._base import Proposal, SearchContext, Strategy

__all__ = ["OptunaStrategy", "RandomStrategy", "TPEStrategy", "NSGA2Strategy"]


class OptunaStrategy(Strategy):
    def _make_sampler(self, ctx: SearchContext, constrained: bool):
        raise NotImplementedError

    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.ctx = ctx
        constrained = bool(ctx.problem.constraints)
        if state is not None:
            saved = pickle.loads(state)
            sampler, study_attrs = saved["sampler"], saved["study_attrs"]
        else:
            sampler, study_attrs = self._make_sampler(ctx, constrained), {}
        self.study = optuna.create_study(directions=ctx.problem.directions, sampler=sampler)
        for k, v in study_attrs.items():
            self.study._storage.set_study_system_attr(self.study._study_id, k, v)
        dists = optuna.distributions
        for t in history:
            rep = t.sampler or {}
            if not rep:
                continue
            complete = t.state == "complete"
            self.study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL,
                params=rep["params"],
                distributions={k: dists.json_to_distribution(v) for k, v in rep["distributions"].items()},
                values=ctx.problem.vector(t.values) if complete else None,
                user_attrs=rep.get("user_attrs", {}),
                system_attrs=rep.get("system_attrs", {}),
            ))
        self._pending: list[Any] = []

    def propose(self, n: int) -> list[Proposal]:
        self._pending = []
        out = []
        for _ in range(n):
            trial = self.study.ask()
            arch = self.ctx.space.sample(trial)
            self._pending.append(trial)
            out.append(Proposal(arch, {"strategy": self.name, "optuna_trial": trial.number}))
        return out

    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]:
        import optuna

        replay = []
        for trial, rec in zip(self._pending, trials):
            if rec.state == "complete":
                # Optuna's constraint convention (<= 0 satisfied), read by TPE and NSGA-II
                for j, v in enumerate(rec.constraints or []):
                    trial.set_constraint(f"c{j}", v)
                self.study.tell(trial, self.ctx.problem.vector(rec.values))
            else:
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            frozen = self.study._storage.get_trial(trial._trial_id)
            replay.append({
                "params": frozen.params,
                "distributions": {k: optuna.distributions.distribution_to_json(d)
                                  for k, d in frozen.distributions.items()},
                "user_attrs": frozen.user_attrs,
                "system_attrs": frozen.system_attrs,
            })
        self._pending = []
        return replay

    def get_state(self) -> bytes:
        attrs = self.study._storage.get_study_system_attrs(self.study._study_id)
        return pickle.dumps({"sampler": self.study.sampler, "study_attrs": attrs})


class RandomStrategy(OptunaStrategy):
    name = "random"

    def _make_sampler(self, ctx, constrained):
        import optuna

        return optuna.samplers.RandomSampler(seed=ctx.seed)


class TPEStrategy(OptunaStrategy):
    name = "tpe"
    defaults = {"batch_size": 10, "n_startup_trials": 10, "multivariate": True}
    rules = {"n_startup_trials": ("int", 0, None), "multivariate": ("bool",)}

    def _make_sampler(self, ctx, constrained):
        import optuna

        # constant_liar: a batch asked at once must not collapse onto one point
        return optuna.samplers.TPESampler(
            seed=ctx.seed, n_startup_trials=self.params["n_startup_trials"], multivariate=self.params["multivariate"],
            constant_liar=True)


class NSGA2Strategy(OptunaStrategy):
    name = "nsga2"
    defaults = {"batch_size": 10, "population_size": 20, "mutation_prob": None, "crossover_prob": 0.9}
    rules = {"population_size": ("int", 2, None), "mutation_prob": ("float?", 0.0, 1.0),
             "crossover_prob": ("float", 0.0, 1.0)}

    def _make_sampler(self, ctx, constrained):
        import optuna

        return optuna.samplers.NSGAIISampler(
            seed=ctx.seed, population_size=self.params["population_size"],
            mutation_prob=self.params["mutation_prob"], crossover_prob=self.params["crossover_prob"])
