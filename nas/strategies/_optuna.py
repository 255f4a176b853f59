"""Optuna samplers as strategies (``random``, ``tpe``, ``nsga2``), driven through ask/tell in batches.

The study lives in memory; our SQL store is the record, and nothing of Optuna's is saved.
On resume a fresh sampler from the job's seed is driven through the job's history again:
the same asks in the same batches (one batch per stored round), the same tells with the
same values and constraints. Optuna's samplers are deterministic given their seed and that
call sequence, so the study and the sampler's random state are exactly those of a run that
was never interrupted, on any Optuna release, with only public API (``ask``, ``tell``,
``add_trial``). Each replayed ask must give the stored architecture; where it does not (an
Optuna release that samples differently from the one the job started with), the study is
rebuilt from the stored trials instead and a sampler seeded from the job's seed and its
number of trials continues, which the job's log says.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Any

from ..errors import SpecError
from ..storage.records import TrialRecord
from ._base import Proposal, SearchContext, Strategy, dump_state, load_state

__all__ = ["OptunaStrategy", "RandomStrategy", "TPEStrategy", "NSGA2Strategy"]

_CONSTRAINTS_ATTR = "nas:constraints"


def _native_constraints() -> bool:
    """Optuna 5 sets constraints on the trial (``Trial.set_constraint``) and deprecates the
    samplers' ``constraints_func``, which Optuna 4 needs."""
    import optuna

    return hasattr(optuna.trial.Trial, "set_constraint")


def _constraints_kwargs(constrained: bool) -> dict[str, Any]:
    if not constrained or _native_constraints():
        return {}
    return {"constraints_func": _constraints_of}


def _constraints_of(trial: Any) -> list[float]:  # module level: a sampler's constraints_func
    return list(trial.user_attrs.get(_CONSTRAINTS_ATTR, ()))


class OptunaStrategy(Strategy):
    """Base of the Optuna samplers: a subclass says which sampler ``_make_sampler`` builds."""

    requires = {"optuna": ">=4.0"}

    def _make_sampler(self, seed: int, constrained: bool) -> Any:
        raise NotImplementedError

    def check_runtime(self, space: Any, problem: Any) -> None:
        """Build the sampler and run one ask/tell on a throwaway study with the job's directions:
        a sampler the installed Optuna cannot build or drive is a spec error before any evaluation."""
        super().check_runtime(space, problem)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(directions=problem.directions,
                                        sampler=self._make_sampler(0, bool(problem.constraints)))
            trial = study.ask()
            trial.suggest_categorical("probe", ["a", "b"])
            study.tell(trial, [0.0] * len(problem.directions))
        except Exception as e:  # noqa: BLE001 - whatever the library raises, the spec cannot run here
            raise SpecError("strategy.name", self.name, "", reason=(
                f"the installed optuna {optuna.__version__} cannot run it: {type(e).__name__}: {e}")) from None

    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.ctx = ctx
        self._pending: list[Any] = []
        saved = load_state(state)
        if saved.get("optuna") not in (None, optuna.__version__):
            ctx.log(f"the job was last saved with optuna {saved['optuna']}; continuing with "
                    f"{optuna.__version__} by replaying its {len(history)} trials")
        mine = [t for t in history if "optuna_trial" in (t.source or {})]
        if not self._replay(mine):
            ctx.log(f"optuna {optuna.__version__} does not propose this job's stored trials again (a release "
                    "that samples differently): the study is rebuilt from the stored trials and continues from "
                    "a new random state, so the rest of the job differs from an uninterrupted run", "warning")
            self._rebuild(mine)

    def _new_study(self, seed: int) -> None:
        import optuna

        sampler = self._make_sampler(seed, bool(self.ctx.problem.constraints))
        self.study = optuna.create_study(directions=self.ctx.problem.directions, sampler=sampler)

    def _replay(self, history: Sequence[TrialRecord]) -> bool:
        """Drive a fresh sampler through ``history`` round by round; False at the first ask that
        does not give the stored architecture."""
        self._new_study(self.ctx.seed)
        for _, group in groupby(history, key=lambda t: t.round):
            group = list(group)
            asked = []
            for t in group:
                trial = self.study.ask()
                if self.ctx.space.sample(trial).arch_id != t.arch_id:
                    return False
                asked.append(trial)
            for trial, t in zip(asked, group):
                self._tell_one(trial, t)
        return True

    def _rebuild(self, history: Sequence[TrialRecord]) -> None:
        """The fallback: stored trials added as they were (params and distributions kept with
        each trial), with a sampler seeded apart from the original's."""
        import optuna

        dists = optuna.distributions
        # Optuna's seeds are 32-bit, like the spec's
        self._new_study((self.ctx.seed * 1_000_003 + len(history) + 1) % 2**32)
        for t in history:
            rep = t.sampler or {}
            if not rep.get("distributions"):
                continue  # a trial saved without its parameters cannot be added; its architecture is still known
            complete = t.state == "complete"
            system_attrs = dict(rep.get("system_attrs", {}))
            if complete and t.constraints:
                system_attrs["constraints"] = list(t.constraints)
            self.study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.FAIL,
                params=rep["params"],
                distributions={k: dists.json_to_distribution(v) for k, v in rep["distributions"].items()},
                values=self.ctx.problem.vector(t.values) if complete else None,
                user_attrs=rep.get("user_attrs", {}), system_attrs=system_attrs))

    def _tell_one(self, trial: Any, rec: TrialRecord) -> None:
        import optuna

        if rec.state == "complete":
            # Optuna's constraint convention (<= 0 satisfied), read by TPE and NSGA-II: set on
            # the trial from Optuna 5, read back by the sampler's constraints_func before
            if _native_constraints():
                for j, v in enumerate(rec.constraints or []):
                    trial.set_constraint(f"c{j}", v)
            elif rec.constraints:
                trial.set_user_attr(_CONSTRAINTS_ATTR, list(rec.constraints))
            self.study.tell(trial, self.ctx.problem.vector(rec.values))
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

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
            self._tell_one(trial, rec)
            # kept with the trial for the fallback of start(); plain JSON of Optuna's public types
            frozen = self.study.get_trials(deepcopy=False)[trial.number]
            replay.append({
                "params": frozen.params,
                "distributions": {k: optuna.distributions.distribution_to_json(d)
                                  for k, d in frozen.distributions.items()},
                "user_attrs": frozen.user_attrs,
                "system_attrs": {k: v for k, v in frozen.system_attrs.items() if not k.startswith("constraints")},
            })
        self._pending = []
        return replay

    def get_state(self) -> bytes:
        import optuna

        # everything is replayed from the trials; the release is kept to say so when it changes
        return dump_state({"optuna": optuna.__version__})


class RandomStrategy(OptunaStrategy):
    name = "random"

    def _make_sampler(self, seed, constrained):
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


class TPEStrategy(OptunaStrategy):
    name = "tpe"
    defaults = {"batch_size": 10, "n_startup_trials": 10, "multivariate": True}
    rules = {"n_startup_trials": ("int", 0, None), "multivariate": ("bool",)}

    def _make_sampler(self, seed, constrained):
        import optuna

        # constant_liar: a batch asked at once must not collapse onto one point
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.params["n_startup_trials"], multivariate=self.params["multivariate"],
            constant_liar=True, **_constraints_kwargs(constrained))


class NSGA2Strategy(OptunaStrategy):
    name = "nsga2"
    defaults = {"batch_size": 10, "population_size": 20, "mutation_prob": None, "crossover_prob": 0.9}
    rules = {"population_size": ("int", 2, None), "mutation_prob": ("float?", 0.0, 1.0),
             "crossover_prob": ("float", 0.0, 1.0)}

    def _make_sampler(self, seed, constrained):
        import optuna

        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=self.params["population_size"],
            mutation_prob=self.params["mutation_prob"], crossover_prob=self.params["crossover_prob"],
            **_constraints_kwargs(constrained))
