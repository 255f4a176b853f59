"""Tests of the search engine in process: ``run_job`` with every strategy, determinism and
resume, the nn-Meter device (tables with unmeasured architectures), the errors of bad specs
(nothing stored), and the Pareto/hypervolume helpers against Optuna's own.

Every job here runs with the inline executor on a SQLite file under the test's tmp dir.
"""

from __future__ import annotations

import copy
import os
import socket
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _fast_non_domination_rank, _is_pareto_front

from nas import (JobConflictError, JobNotFoundError, JobResult, JobSpec, NasError, Progress, SpecError, load_spec,
                 prepare_job, run_job)
from nas.pareto import hypervolume, nondominated_rank, normalized_hypervolume, pareto_front, pareto_mask
from nas.storage import Store, TrialRecord
from nas.strategies import list_strategies, strategy_class

# the strategies that search any space (slimming and knapsack need ordered choices: test_drivers.py)
STRATEGIES = [s for s in list_strategies() if strategy_class(s).any_space]
NNMETER = "cortexA76cpu_tflite21"  # nn-Meter: 2,000 of 15,625 nb201 cells measured
BUDGET = 30


# -- specs ---------------------------------------------------------------------------
def make_spec(strategy: str, space: str = "nb201", *, budget: int = BUDGET, seed: int = 0,
              **params: Any) -> dict[str, Any]:
    """nb201: accuracy x latency on raspi4 with latency <= 20 ms; hwgpt-s: perplexity x A100 latency."""
    if space == "nb201":
        objectives = [{"name": "accuracy", "direction": "maximize"},
                      {"name": "latency_ms", "device": "raspi4", "direction": "minimize"}]
        constraints = [{"name": "latency_ms", "device": "raspi4", "max": 20.0}]
    elif space == "hwgpt-s":
        objectives = [{"name": "perplexity", "direction": "minimize"},
                      {"name": "latency_ms", "device": "a100", "direction": "minimize"}]
        constraints = []
    else:  # pragma: no cover - test helper misuse
        raise ValueError(space)
    return {"space": {"name": space}, "objectives": objectives, "constraints": constraints,
            "strategy": {"name": strategy, **params}, "budget": {"evaluations": budget}, "seed": seed,
            "execution": {"backend": "inline"}}


def nnmeter_spec(strategy: str, budget: int = BUDGET) -> dict[str, Any]:
    return {"space": {"name": "nb201"},
            "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": NNMETER}],
            "strategy": {"name": strategy}, "budget": {"evaluations": budget}, "seed": 0,
            "execution": {"backend": "inline"}}


def arch_ids(result: JobResult) -> list[str]:
    return [t.arch_id for t in result.trials]


def is_cached(t: TrialRecord) -> bool:
    return bool((t.source or {}).get("cached"))


def measured(trials: list[TrialRecord]) -> list[TrialRecord]:
    """Trials that spent budget: real evaluations (not re-used, not 'not measured')."""
    return [t for t in trials if not is_cached(t) and t.state != "unmeasured"]


def as_min(values: list[dict[str, float]], objectives: list[dict[str, str]]) -> np.ndarray:
    return np.array([[v[o["key"]] * (-1.0 if o["direction"] == "maximize" else 1.0) for o in objectives]
                     for v in values], dtype=np.float64).reshape(len(values), len(objectives))


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def job_rows(store: Store) -> tuple[int, int, int]:
    with store.engine.connect() as conn:
        return tuple(conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                     for t in ("jobs", "trials", "job_rounds"))


@pytest.fixture(scope="module")
def module_store(tmp_path_factory) -> Store:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('engine') / 'nas.db'}")
    yield store
    store.dispose()


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    yield s
    s.dispose()


@pytest.fixture(scope="module")
def baseline(module_store) -> Callable[..., tuple[JobResult, list[Progress]]]:
    """Uninterrupted runs, computed once per (strategy, space, seed, budget) and shared."""
    cache: dict[tuple, tuple[JobResult, list[Progress]]] = {}

    def get(strategy: str, space: str, seed: int = 0, budget: int = BUDGET) -> tuple[JobResult, list[Progress]]:
        key = (strategy, space, seed, budget)
        if key not in cache:
            seen: list[Progress] = []
            result = run_job(make_spec(strategy, space, seed=seed, budget=budget), module_store,
                             progress=seen.append)
            cache[key] = (result, seen)
        return cache[key]
    return get


# -- every strategy on both tabular spaces -----------------------------------------
@pytest.mark.parametrize("space", ["nb201", "hwgpt-s"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_completes_with_budget(strategy, space, baseline, module_store):
    result, progress = baseline(strategy, space)
    assert result.state == "completed"
    assert module_store.get_job(result.job_id).state == "completed"
    # the budget counts real evaluations; re-proposed architectures are re-used for free
    assert len(measured(result.trials)) == BUDGET
    assert progress[-1].n_evaluations == BUDGET and progress[-1].budget == BUDGET
    assert progress[-1].n_trials == len(result.trials)
    assert [p.round for p in progress] == list(range(len(progress)))
    assert [t.number for t in result.trials] == list(range(len(result.trials)))
    assert {t.state for t in result.trials} <= {"complete"}  # both tables measure every arch on these metrics
    assert all(t.source and t.source["strategy"] == strategy for t in result.trials)
    # every re-used trial repeats an architecture measured earlier in the job
    first_seen: dict[str, int] = {}
    for t in result.trials:
        if is_cached(t):
            assert t.arch_id in first_seen
            assert t.values == result.trials[first_seen[t.arch_id]].values
        else:
            assert t.arch_id not in first_seen, f"arch {t.arch_id} measured twice"
            first_seen[t.arch_id] = t.number
    rounds = module_store.load_rounds(result.job_id)
    assert [r.round for r in rounds] == list(range(len(rounds)))
    assert rounds[-1].n_evaluations == BUDGET and rounds[-1].n_trials == len(result.trials)


@pytest.mark.parametrize("space", ["nb201", "hwgpt-s"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_pareto_is_feasible_and_non_dominated(strategy, space, baseline):
    result, _ = baseline(strategy, space)
    assert result.pareto, "a completed job with feasible trials has a front"
    objectives = result.objectives
    assert [o["key"] for o in objectives] == (["accuracy", "latency_ms@raspi4"] if space == "nb201"
                                              else ["perplexity", "latency_ms@a100"])
    for t in result.pareto:
        assert t.state == "complete" and t.feasible
        if space == "nb201":
            assert t.values["latency_ms@raspi4"] <= 20.0
            assert t.constraints is not None and all(c <= 0 for c in t.constraints)
    front = as_min([t.values for t in result.pareto], objectives)
    for i in range(len(front)):
        for j in range(len(front)):
            assert not dominates(front[i], front[j]), (result.pareto[i].number, result.pareto[j].number)
    # ... and no feasible trial of the job dominates a front member; every undominated one is on it
    feasible = [t for t in result.trials if t.state == "complete" and t.feasible]
    feas = as_min([t.values for t in feasible], objectives)
    pareto_ids = {t.arch_id for t in result.pareto}
    assert len(pareto_ids) == len(result.pareto)
    for t, v in zip(feasible, feas):
        undominated = not any(dominates(w, v) for w in feas)
        assert (t.arch_id in pareto_ids) == undominated


@pytest.mark.parametrize("space", ["nb201", "hwgpt-s"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_proposals_other_seed_different(strategy, space, baseline, module_store):
    first, _ = baseline(strategy, space)
    again = run_job(make_spec(strategy, space), module_store)
    assert again.job_id != first.job_id
    assert arch_ids(again) == arch_ids(first)
    other, _ = baseline(strategy, space, seed=1)
    assert arch_ids(other) != arch_ids(first)


# -- resume ----------------------------------------------------------------------------
class Interrupt(Exception):
    pass


def interrupt_at(round_: int) -> Callable[[Progress], None]:
    def on_round(p: Progress) -> None:
        if p.round == round_:
            raise Interrupt(f"stopped after round {p.round}")
    return on_round


@pytest.mark.parametrize("space", ["nb201", "hwgpt-s"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_after_interrupt_matches_uninterrupted_run(strategy, space, baseline, store):
    budget = 40  # four rounds of 10: the interruption after round 2 leaves work to do
    full, _ = baseline(strategy, space, budget=budget)
    spec = make_spec(strategy, space, budget=budget)
    with pytest.raises(Interrupt):
        run_job(spec, store, progress=interrupt_at(2))
    (job,) = store.list_jobs()
    assert job.state == "failed" and "Interrupt" in (job.error or "")
    assert [r.round for r in store.load_rounds(job.id)] == [0, 1, 2]
    stored = store.load_trials(job.id)
    assert 0 < len(stored) < len(full.trials)
    assert [t.arch_id for t in stored] == arch_ids(full)[:len(stored)]

    resumed = run_job(spec, store, resume=job.id)
    assert resumed.job_id == job.id and resumed.state == "completed"
    assert arch_ids(resumed) == arch_ids(full)
    assert [t.number for t in resumed.trials] == list(range(len(resumed.trials)))
    assert len(measured(resumed.trials)) == budget
    assert [r.round for r in store.load_rounds(job.id)] == list(range(len(store.load_rounds(job.id))))
    assert [t.values for t in resumed.trials] == [t.values for t in full.trials]
    assert len(store.list_jobs()) == 1  # resumed in place, no second job


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resume_twice_and_resume_of_completed_job(strategy, baseline, store):
    full, _ = baseline(strategy, "nb201", budget=40)
    spec = make_spec(strategy, "nb201", budget=40)
    with pytest.raises(Interrupt):
        run_job(spec, store, progress=interrupt_at(0))
    (job,) = store.list_jobs()
    with pytest.raises(Interrupt):  # round numbers continue across a resume
        run_job(spec, store, resume=job.id, progress=interrupt_at(2))
    assert [r.round for r in store.load_rounds(job.id)] == [0, 1, 2]
    resumed = run_job(spec, store, resume=job.id)
    assert arch_ids(resumed) == arch_ids(full)
    n = len(resumed.trials)
    again = run_job(spec, store, resume=job.id)  # nothing left to do: same result, nothing written
    assert again.state == "completed" and arch_ids(again) == arch_ids(full)
    assert store.count_trials(job.id) == n


@pytest.mark.parametrize("step", ["tell", "get_state"])
def test_a_fault_in_the_strategy_keeps_the_work_says_why_and_resumes_exactly(step, baseline, store, monkeypatch):
    from nas.strategies import NSGA2Strategy

    full, _ = baseline("nsga2", "nb201", budget=40)
    spec = make_spec("nsga2", "nb201", budget=40)
    real = getattr(NSGA2Strategy, step)
    calls = {"n": 0}

    def broken(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:  # the second round's evaluations are done when it breaks
            raise TypeError("cannot pickle '_thread.lock' object")
        return real(self, *args)

    monkeypatch.setattr(NSGA2Strategy, step, broken)
    with pytest.raises(NasError, match="internal error in strategy nsga2"):
        run_job(spec, store)
    (job,) = store.list_jobs()
    assert job.state == "failed"
    assert job.error.startswith(f"internal error in strategy nsga2 ({step}): TypeError: cannot pickle")
    assert "not in an evaluation" in job.error
    stored = store.load_trials(job.id)
    assert len(stored) == 20 and [t.arch_id for t in stored] == arch_ids(full)[:20]  # both rounds kept
    (failed,) = [msg for level, msg in store.logs(job.id) if level == "error"]
    assert "Traceback" in failed and "in broken" in failed

    monkeypatch.setattr(NSGA2Strategy, step, real)
    resumed = run_job(spec, store, resume=job.id)
    assert resumed.state == "completed" and arch_ids(resumed) == arch_ids(full)
    assert [t.values for t in resumed.trials] == [t.values for t in full.trials]


def test_a_strategy_the_installed_library_cannot_run_is_refused_before_anything_runs(store, monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "3.6.1" if d == "optuna" else real(d))
    with pytest.raises(SpecError, match=r"strategy.name: got 'nsga2' \(it needs optuna>=4.0; optuna 3.6.1 is "
                                        r"installed: pip install 'optuna>=4.0'\)"):
        run_job(make_spec("nsga2"), store)
    assert job_rows(store) == (0, 0, 0)


def test_a_sampler_the_installed_optuna_cannot_drive_is_refused_before_anything_runs(store, monkeypatch):
    import optuna

    def refuses(self, *a, **k):
        raise RuntimeError("this release cannot sample multi-objective")

    monkeypatch.setattr(optuna.samplers.NSGAIISampler, "sample_independent", refuses)
    with pytest.raises(SpecError, match=f"the installed optuna {optuna.__version__} cannot run it: "
                                        "RuntimeError: this release cannot sample"):
        run_job(make_spec("nsga2"), store)
    assert job_rows(store) == (0, 0, 0)


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_optuna_history_its_release_does_not_propose_again_is_rebuilt_with_a_warning(seed, store):
    """The fallback of the replay: stored trials that the sampler does not propose again (as
    under a release that samples differently) are added as they are, and the search goes on."""
    from nas.strategies import SearchContext, get_strategy

    spec = make_spec("tpe", "nb201", budget=20, seed=seed)
    done = run_job(spec, store)
    job = prepare_job(spec)
    other = run_job(make_spec("tpe", "nb201", budget=20, seed=(seed + 1) % 2**32), store).trials
    # the first job's trials, each under another job's architecture: no replayed ask matches
    history = [TrialRecord(**{**t.to_dict(), "arch": o.arch}) for t, o in zip(done.trials, other)]
    logged: list[str] = []
    strategy = get_strategy("tpe")
    strategy.start(SearchContext(job.space, job.problem, seed, 40, lambda m, *a: logged.append(m)), history, None)
    assert any("does not propose this job's stored trials again" in m for m in logged)
    assert len(strategy.study.trials) == len(history)
    assert len(strategy.propose(5)) == 5


def test_optuna_state_is_json_and_a_legacy_pickled_state_is_never_unpickled(baseline, store):
    import json
    import pickle

    full, _ = baseline("tpe", "nb201", budget=40)
    spec = make_spec("tpe", "nb201", budget=40)
    with pytest.raises(Interrupt):
        run_job(spec, store, progress=interrupt_at(1))
    (job,) = store.list_jobs()
    state = store.get_job(job.id, with_state=True).strategy_state
    assert set(json.loads(state)) == {"optuna"}
    # a job saved by an older release holds a pickle: ignored, the trials are replayed instead
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE jobs SET strategy_state = :s"), {"s": pickle.dumps({"sampler": object})})
    resumed = run_job(spec, store, resume=job.id)
    assert arch_ids(resumed) == arch_ids(full)


def test_resume_refuses_a_job_with_a_live_writer(store):
    spec = make_spec("random", budget=10)
    job = prepare_job(spec)
    record = store.create_job(job.spec.model_dump(mode="json", exclude_none=True), space="nb201",
                              strategy="random", seed=0, budget=10, state="running",
                              owner=f"{socket.gethostname()}:{os.getpid()}:abcdef")
    with pytest.raises(JobConflictError):
        run_job(spec, store, resume=record.id)
    assert store.count_trials(record.id) == 0
    assert store.get_job(record.id).owner == record.owner


# -- predictor-guided and the nn-Meter device -------------------------------------
def test_predictor_guided_records_predictor_and_labels(baseline):
    result, _ = baseline("predictor-guided", "nb201", budget=40)
    init, batch = 10, 10  # the strategy's defaults
    assert len(set(arch_ids(result))) == len(result.trials), "an arch was proposed twice"
    assert not any(is_cached(t) for t in result.trials)
    for t in result.trials:
        src = t.source
        labels_before = sum(1 for u in result.trials if u.number < t.number - t.number % batch
                            and u.state == "complete")
        assert src["labels"] == labels_before
        assert src["round"] == t.round
        if labels_before < init:
            assert src["pick"] == "random-init" and "predictor" not in src
        else:
            # exploit picks: per objective, the ranker when it cross-validates at least as well
            # as the baseline, else the baseline; explore picks always from the forest's spread
            if src["pick"] == "explore":
                assert src["predictor"] == "ridge-rf"
            else:
                for key, used in src["predictors"].items():
                    c = src["trust"][key]
                    assert used == ("lambdarank" if c["lambdarank"] >= c["ridge-rf"] else "ridge-rf")
                assert src["predictor"] == "+".join(dict.fromkeys(src["predictors"].values()))
            assert src["pick"] in ("exploit", "explore")
            assert src["screened"] > batch  # screened a large pool, evaluated a few
            assert set(src["predicted"]) == {"accuracy", "latency_ms@raspi4"}
    assert any("predictor" in t.source for t in result.trials)


def test_predictor_guided_logs_its_trust_verdicts(baseline, module_store):
    result, _ = baseline("predictor-guided", "nb201", budget=40)
    verdicts = [m for _, m in module_store.logs(result.job_id) if "trusted" in m or "falling back" in m]
    assert verdicts and verdicts[0].startswith("round 1: lambdarank")
    # one verdict per objective, each with the figures it was made on
    assert any(" on accuracy:" in m for m in verdicts) and any(" on latency_ms@raspi4:" in m for m in verdicts)
    assert "cross-validated Kendall tau" in verdicts[0]


class _Contrarian:
    """A real predictor (a forest) whose order is reversed: the worst ranker there is."""

    def __init__(self, random_state=None):
        from predictors import get_predictor

        self.random_state = random_state
        self.forest = get_predictor("rf", random_state=random_state)

    @classmethod
    def _get_param_names(cls):
        return ["random_state"]

    def fit(self, X, y):
        self.forest.fit(X, y)
        return self

    def predict(self, X):
        return -self.forest.predict(X)


def test_an_untrustworthy_predictor_falls_back_to_the_baseline(store):
    import predictors

    predictors.register_predictor("contrarian", _Contrarian)
    try:
        result = run_job(make_spec("predictor-guided", "hwgpt-s", budget=30, predictor="contrarian"), store)
    finally:
        predictors._REGISTRY.pop("contrarian")
    logs = [m for _, m in store.logs(result.job_id)]
    assert any("contrarian not trusted on perplexity" in m and "falling back to ridge-rf" in m for m in logs), logs
    model_based = [t.source for t in result.trials if "trust" in t.source]
    assert model_based and all(s["predictor"] == "ridge-rf" for s in model_based)
    assert all(s["trust"][key]["contrarian"] < s["trust"][key]["ridge-rf"]
               for s in model_based for key in ("perplexity", "latency_ms@a100"))


def test_accuracy_is_ranked_on_canonical_forms_and_latency_on_networks_as_built():
    from nas.strategies._base import SearchContext

    job = prepare_job(make_spec("predictor-guided", budget=30))
    strategy = strategy_class("predictor-guided")(**job.spec.strategy.params)
    strategy.start(SearchContext(job.space, job.problem, 0, 30, lambda m: None), [], None)
    live = {"1<-0": "nor_conv_3x3", "2<-0": "none", "2<-1": "none", "3<-0": "skip_connect", "3<-1": "nor_conv_1x1"}
    form = job.space.from_params({**live, "3<-2": "none"})
    copy = job.space.from_params({**live, "2<-0": "nor_conv_3x3", "3<-2": "none"})  # node 2 is a dead end
    assert job.space.canonical(copy) == form
    assert strategy._of_function("accuracy") and not strategy._of_function("latency_ms@raspi4")
    canonical, built = strategy._features([form, copy], canonical=True), strategy._features([form, copy])
    np.testing.assert_array_equal(canonical[0], canonical[1])
    assert not np.array_equal(built[0], built[1])


def test_predictor_guided_evaluates_each_network_once(store):
    from spaces import Architecture, get_space

    space = get_space("nb201")
    canon = space.canonical_indices()
    spec = make_spec("predictor-guided", budget=40, predictor="rf")
    spec["objectives"], spec["constraints"] = [{"name": "accuracy"}], []
    accuracy_only = run_job(spec, store)
    forms = [canon[space.index_of(Architecture.from_dict(t.arch))] for t in accuracy_only.trials]
    assert len(set(forms)) == len(forms) == 40  # no function measured twice
    mixed = run_job(make_spec("predictor-guided", budget=40, predictor="rf"), store)
    for r in range(1, 4):  # model-based rounds: one cell per function in a batch
        batch = [canon[space.index_of(Architecture.from_dict(t.arch))] for t in mixed.trials if t.round == r]
        assert len(set(batch)) == len(batch) == 10


def test_predictor_guided_on_nnmeter_device_spends_the_full_budget(store):
    result = run_job(nnmeter_spec("predictor-guided"), store)
    assert result.state == "completed"
    # it screens only what the table measured: every proposal is a real evaluation
    assert Counter(t.state for t in result.trials) == {"complete": BUDGET}
    assert len(measured(result.trials)) == BUDGET
    assert len(set(arch_ids(result))) == BUDGET
    assert all(np.isfinite(t.values[f"latency_ms@{NNMETER}"]) for t in result.trials)


def test_random_on_nnmeter_device_stores_unmeasured_trials_outside_the_budget(store):
    seen: list[Progress] = []
    result = run_job(nnmeter_spec("random"), store, progress=seen.append)
    assert result.state == "completed"
    states = Counter(t.state for t in result.trials)
    assert states["unmeasured"] > 0  # 13,625 of 15,625 cells have no nn-Meter latency
    assert set(states) <= {"complete", "unmeasured"}
    unmeasured = [t for t in result.trials if t.state == "unmeasured"]
    assert all(t.values is None and not t.feasible and NNMETER in (t.error or "") for t in unmeasured)
    assert all("accuracy" in t.metrics for t in unmeasured)  # what the table has is kept
    fresh_complete = [t for t in result.trials if t.state == "complete" and not is_cached(t)]
    assert len(fresh_complete) == BUDGET
    assert seen[-1].n_evaluations == BUDGET and seen[-1].n_trials == len(result.trials)
    assert [t.number for t in result.trials] == list(range(len(result.trials)))
    assert all(t.state == "complete" for t in result.pareto)


@pytest.mark.parametrize("strategy", ["random", "nsga2"])
def test_job_record_counts_only_real_evaluations(strategy, store):
    result = run_job(make_spec(strategy, "hwgpt-s" if strategy == "random" else "nb201"), store)
    assert any(is_cached(t) for t in result.trials)  # the precondition of the bug
    job = store.get_job(result.job_id)
    assert store.load_rounds(job.id)[-1].n_evaluations == BUDGET
    assert job.n_evaluations == BUDGET


EXAMPLES = sorted(p.name for p in (Path(__file__).parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_runs_to_completion(example, store):
    """Each shipped example as it is (space, objectives, devices, constraints, strategy), for a
    few evaluations inline; a model space's ``-small`` parent becomes its ``-tiny`` sibling
    (trained in seconds), the one change besides budget and backend."""
    d = load_spec(Path(__file__).parent.parent / "examples" / example).model_dump(mode="json", exclude_none=True)
    if str(d["space"].get("parent", "")).endswith("-small"):
        d["space"]["parent"] = d["space"]["parent"].removesuffix("-small") + "-tiny"
    n = 6
    d["budget"] = {**d["budget"], "evaluations": n}
    d["execution"] = {**d.get("execution", {}), "backend": "inline"}
    spec = JobSpec.from_dict(d)
    result = run_job(spec, store)
    assert result.state == "completed", store.get_job(result.job_id).error
    assert result.trials and result.n_evaluations <= n
    assert not [t for t in result.trials if t.state == "fail"], [t.error for t in result.trials]


@pytest.mark.parametrize("example", sorted(p.name for p in (Path(__file__).parent.parent / "examples").glob("*.yaml")))
def test_every_example_validates(example):
    """Every shipped example is a valid job: space, objectives, devices, strategy, constraints."""
    from nas.engine import prepare_job

    job = prepare_job(load_spec(Path(__file__).parent.parent / "examples" / example))
    assert job.problem.objectives


# -- bad specs: an error naming field, given and valid, and nothing stored ---------
def _mod(f: Callable[[dict], Any]) -> dict[str, Any]:
    spec = make_spec("random", budget=10)
    f(spec)
    return spec


BAD_SPECS = {
    # case: (spec, field, given (as shown), what is valid (substrings))
    "unknown space": (_mod(lambda s: s["space"].update(name="nope")), "space.name", "'nope'",
                      ["nb201", "hwgpt-s"]),
    "unknown dataset": (_mod(lambda s: s["space"].update(dataset="mnist")), "space.dataset", "'mnist'",
                        ["cifar10", "cifar100", "ImageNet16-120"]),
    "unknown space config key": (_mod(lambda s: s["space"].update(depth=3)), "space.depth", "3", ["dataset"]),
    "unknown objective": (_mod(lambda s: s["objectives"].__setitem__(0, {"name": "acc"})),
                          "objectives[0].name", "'acc'", ["accuracy", "latency_ms"]),
    "unknown device": (_mod(lambda s: s["objectives"][1].update(device="toaster")),
                       "objectives[1].device", "'toaster'", ["raspi4", NNMETER, "pixel3"]),
    "objective without device": (_mod(lambda s: s["objectives"][1].pop("device")),
                                 "objectives[1].device", "None", ["raspi4"]),
    "unknown constraint metric": (_mod(lambda s: s["constraints"][0].update(name="flops", device=None)),
                                  "constraints[0].name", "'flops'", ["accuracy", "latency_ms"]),
    "unknown constraint device": (_mod(lambda s: s["constraints"][0].update(device="toaster")),
                                  "constraints[0].device", "'toaster'", ["raspi4"]),
    "unknown strategy": (_mod(lambda s: s["strategy"].update(name="hill-climb")), "strategy.name",
                         "'hill-climb'", STRATEGIES),
    "unknown strategy parameter": (_mod(lambda s: s["strategy"].update(population_size=8)),
                                   "strategy.population_size", "8", ["batch_size"]),
    "unknown parameter of nsga2": (_mod(lambda s: s["strategy"].update(name="nsga2", popsize=8)),
                                   "strategy.popsize", "8", ["population_size", "crossover_prob"]),
    "unknown predictor": (_mod(lambda s: s["strategy"].update(name="predictor-guided", predictor="svm")),
                          "strategy.predictor", "'svm'", ["rf"]),
    "batch size 0": (_mod(lambda s: s["strategy"].update(batch_size=0)), "strategy.batch_size", "0", [">= 1"]),
    "budget 0": (_mod(lambda s: s["budget"].update(evaluations=0)), "budget.evaluations", "0",
                 ["greater than 0"]),
    "budget -5": (_mod(lambda s: s["budget"].update(evaluations=-5)), "budget.evaluations", "-5",
                  ["greater than 0"]),
    "missing objectives": (_mod(lambda s: s.pop("objectives")), "objectives", "None", ["missing"]),
    "empty objectives": (_mod(lambda s: s.update(objectives=[])), "objectives", "[]", ["at least 1"]),
    "missing budget": (_mod(lambda s: s.pop("budget")), "budget", "None", ["missing"]),
    "unknown top-level key": (_mod(lambda s: s.update(budjet=3)), "budjet", "'budjet'",
                              ["budget", "objectives", "space"]),
    "bad direction": (_mod(lambda s: s["objectives"][0].update(direction="up")), "objectives[0].direction",
                      "'up'", ["minimize", "maximize"]),
    "unknown backend": (_mod(lambda s: s["execution"].update(backend="slurm")), "execution.backend",
                        "'slurm'", ["ray", "inline"]),
    "infeasible constraint": (_mod(lambda s: s["constraints"][0].update(max=0.0001)), "constraints[0]",
                              "latency_ms@raspi4 <= 0.0001", ["ranges from"]),
    "jointly infeasible constraints": (
        _mod(lambda s: s.update(constraints=[{"name": "latency_ms", "device": "raspi4", "max": 5.0},
                                             {"name": "accuracy", "min": 93.0}])),
        "constraints", "latency_ms@raspi4 <= 5.0; 93.0 <= accuracy", ["at least one architecture"]),
    "constraint without bounds": (_mod(lambda s: s["constraints"][0].pop("max")), "constraints[0]", "",
                                  ["min", "max"]),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_names_field_given_and_valid_and_stores_nothing(case, store):
    spec, field, given, valid = BAD_SPECS[case]
    with pytest.raises(SpecError) as prepared:
        prepare_job(copy.deepcopy(spec))
    with pytest.raises(SpecError) as ran:
        run_job(copy.deepcopy(spec), store)
    for e in (prepared.value, ran.value):
        msg = str(e)
        assert e.field == field
        assert msg.startswith(f"{field}: got ")
        assert given in msg
        for v in valid:
            assert v in msg, f"{v!r} not in {msg!r}"
        assert "\n" not in msg
        assert isinstance(e, NasError) and isinstance(e, ValueError)
    assert store.list_jobs() == []
    assert job_rows(store) == (0, 0, 0)


def test_jointly_infeasible_constraints_are_each_feasible_alone(store):
    spec, *_ = BAD_SPECS["jointly infeasible constraints"]
    for c in spec["constraints"]:
        prepare_job({**spec, "constraints": [c]})  # no error: only the pair is impossible


def test_spec_that_is_not_a_mapping(store):
    with pytest.raises(SpecError) as e:
        run_job(["space", "nb201"], store)  # type: ignore[arg-type]
    assert e.value.field == "spec"
    assert job_rows(store) == (0, 0, 0)


def test_resume_of_unknown_job_stores_nothing(store):
    with pytest.raises(JobNotFoundError) as e:
        run_job(make_spec("random", budget=10), store, resume="0123456789ab")
    assert str(e.value).startswith("job_id: got '0123456789ab'")
    assert job_rows(store) == (0, 0, 0)


@pytest.mark.parametrize("change,field", [
    (lambda s: s.update(seed=3), "seed"),
    (lambda s: s["budget"].update(evaluations=11), "budget.evaluations"),
    (lambda s: s["strategy"].update(name="tpe"), "strategy.name"),
    (lambda s: s["objectives"][1].update(device="pixel3"), "objectives[1].device"),
])
def test_resume_with_a_different_spec_is_refused_and_changes_nothing(change, field, store):
    spec = make_spec("random", budget=20)
    with pytest.raises(Interrupt):
        run_job(spec, store, progress=interrupt_at(0))
    (job,) = store.list_jobs()
    before = (job_rows(store), store.load_trials(job.id), store.get_job(job.id))
    other = copy.deepcopy(spec)
    change(other)
    with pytest.raises(SpecError) as e:
        run_job(other, store, resume=job.id)
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}: got ")
    assert job.id in str(e.value)
    assert (job_rows(store), store.load_trials(job.id), store.get_job(job.id)) == before


def test_resume_with_a_different_spec_shows_both_values(store):
    spec = make_spec("random", budget=20)
    with pytest.raises(Interrupt):
        run_job(spec, store, progress=interrupt_at(0))
    (job,) = store.list_jobs()
    with pytest.raises(SpecError) as e:
        run_job({**spec, "seed": 3}, store, resume=job.id)
    assert "got 3" in str(e.value) and "0" in str(e.value).partition("valid:")[2]


# -- Pareto front and hypervolume against Optuna -----------------------------------
def random_points(rng: np.random.Generator, n: int, m: int, kind: str) -> np.ndarray:
    if kind == "grid":  # ties and exact duplicates
        return rng.integers(0, 5, size=(n, m)).astype(np.float64)
    if kind == "front":  # mutually non-dominated points on a simplex-like surface
        x = rng.random((n, m))
        return x / x.sum(axis=1, keepdims=True)
    return rng.random((n, m))


@pytest.mark.parametrize("kind", ["uniform", "grid", "front"])
@pytest.mark.parametrize("m", [2, 3, 4])
def test_pareto_mask_and_hypervolume_match_optuna(m, kind):
    rng = np.random.default_rng(100 * m + len(kind))
    for n in [1, 2, 3, 5, 8, 13, 21, 40, 60] * 3:
        p = random_points(rng, n, m, kind)
        ours = pareto_mask(p)
        assert ours.tolist() == _is_pareto_front(p, assume_unique_lexsorted=False).tolist()
        brute = [not any(dominates(q, x) for q in p) for x in p]
        assert ours.tolist() == brute
        ref = p.max(axis=0) + rng.random(m) + 0.1
        expected = compute_hypervolume(p, ref)
        assert hypervolume(p, ref, ["minimize"] * m) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        # mixed directions: maximised columns mirror through zero
        dirs = [("maximize" if j % 2 == 0 else "minimize") for j in range(m)]
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in dirs])
        assert hypervolume(p * sign, ref * sign, dirs) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert sorted(pareto_front(p * sign, dirs).tolist()) == np.flatnonzero(ours).tolist()
        # ranks: peeling fronts agrees with Optuna's fast non-dominated sort
        assert nondominated_rank(p).tolist() == _fast_non_domination_rank(p).tolist()


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_ignores_points_beyond_the_reference(m):
    rng = np.random.default_rng(m)
    for _ in range(20):
        p = rng.random((30, m))
        ref = np.full(m, 0.7)
        inside = p[np.all(p < ref, axis=1)]
        expected = compute_hypervolume(inside, ref) if len(inside) else 0.0
        assert hypervolume(p, ref, ["minimize"] * m) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_normalized_hypervolume_is_hypervolume_of_the_unit_box(m):
    rng = np.random.default_rng(10 + m)
    dirs = ["maximize"] + ["minimize"] * (m - 1)
    for _ in range(20):
        v = rng.random((25, m)) * np.arange(1, m + 1) * 10
        lo, hi = v.min(axis=0), v.max(axis=0)
        sign = np.array([-1.0] + [1.0] * (m - 1))
        mins = v * sign
        low, high = np.minimum(lo * sign, hi * sign), np.maximum(lo * sign, hi * sign)
        unit = (mins - low) / (high - low)
        expected = compute_hypervolume(unit[np.all(unit < 1, axis=1)], np.ones(m)) \
            if np.any(np.all(unit < 1, axis=1)) else 0.0
        # lo/hi are "best" and "worst" per objective in its own sign, as the engine passes them
        best = np.where(sign < 0, hi, lo)
        worst = np.where(sign < 0, lo, hi)
        got = normalized_hypervolume(v, dirs, best, worst)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert 0.0 <= got <= 1.0


def test_pareto_helpers_edge_cases():
    assert pareto_front(np.zeros((0, 2)), ["minimize", "minimize"]).tolist() == []
    assert hypervolume(np.zeros((0, 3)), [1, 1, 1], ["minimize"] * 3) == 0.0
    same = np.array([[1.0, 2.0], [1.0, 2.0], [2.0, 3.0]])
    assert pareto_mask(same).tolist() == [True, True, False]  # duplicates are all kept
    assert hypervolume(np.array([[np.nan, 1.0], [0.5, 0.5]]), [1, 1], ["minimize"] * 2) == pytest.approx(0.25)
    assert hypervolume(np.array([[0.5, 2.0]]), [1, 1], ["maximize", "maximize"]) == 0.0  # worse than ref
    assert hypervolume(np.array([[2.0, 3.0]]), [1, 1], ["maximize", "maximize"]) == pytest.approx(2.0)


@pytest.mark.parametrize("strategy, params, field, valid", [
    ("nsga2", {"population_size": 1}, "strategy.population_size", ">= 2"),
    ("nsga2", {"mutation_prob": 5}, "strategy.mutation_prob", "between 0.0 and 1.0"),
    ("nsga2", {"crossover_prob": -1}, "strategy.crossover_prob", "between 0.0 and 1.0"),
    ("tpe", {"n_startup_trials": -1}, "strategy.n_startup_trials", ">= 0"),
    ("tpe", {"multivariate": "maybe"}, "strategy.multivariate", "true or false"),
    ("predictor-guided", {"kappa": -5}, "strategy.kappa", ">= 1.0"),
    ("predictor-guided", {"transform": "log"}, "strategy.transform", "auto, linear, quantile"),
    ("random", {"batch_size": 0}, "strategy.batch_size", ">= 1"),
])
def test_bad_strategy_parameters_are_spec_errors(store, strategy, params, field, valid):
    with pytest.raises(SpecError) as e:
        run_job(make_spec(strategy, **params), store)
    assert str(e.value).startswith(f"{field}: got ") and valid in str(e.value)
    assert store.list_jobs() == []


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range_is_a_spec_error(store, seed):
    with pytest.raises(SpecError, match=r"^seed: got"):
        run_job(make_spec("random", seed=seed), store)
    assert store.list_jobs() == []


def test_unspent_budget_is_reported(store, monkeypatch):
    """A strategy that only re-proposes what is measured spends no budget; the job stops and says so."""
    import nas.engine
    import nas.strategies as strategies
    from nas.strategies import Proposal, Strategy

    class Stuck(Strategy):
        name = "stuck"

        def start(self, ctx, history, state):
            self.arch = ctx.space.enumerate()[0]

        def propose(self, n):
            return [Proposal(self.arch, {"strategy": self.name})]

        def tell(self, proposals, trials):
            return [None] * len(trials)

        def get_state(self):
            return b""

    monkeypatch.setattr(nas.engine, "MAX_IDLE_PROPOSALS", 3)
    monkeypatch.setitem(strategies._REGISTRY, "stuck", Stuck)
    result = run_job(make_spec("stuck", budget=5), store)
    assert result.state == "completed" and (result.n_evaluations, result.budget) == (1, 5)
    assert len(result.trials) == 4 and sum(bool((t.source or {}).get("cached")) for t in result.trials) == 3
    assert any("budget not spent: 1 of 5" in m for _, m in store.logs(result.job_id))


def test_stored_fronts_follow_a_job_round_by_round_and_match_the_full_front(store_url):
    """StoredFronts (the API's) extends a job's front with each new round and always equals the
    front of all trials; so does the engine's RunningFront."""
    from nas.fronts import RunningFront, StoredFronts, front_of
    from nas.storage import RoundRecord, Store

    store = Store(store_url)
    job = prepare_job({"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"},
                       {"name": "latency_ms", "device": "raspi4"}], "strategy": {"name": "random"},
                       "budget": {"evaluations": 400}, "seed": 0,
                       "constraints": [{"name": "latency_ms", "device": "raspi4", "max": 20.0}]})
    rec = store.create_job({}, space="nb201", strategy="random", seed=0, budget=400, state="running", owner="t")
    pool = job.space.enumerate()
    rng = np.random.default_rng(0)
    fronts, running, written = StoredFronts(store), RunningFront(job.problem), []
    from nas.engine import _make_trial

    for rnd in range(8):
        arch_ids = rng.integers(0, 300, size=50)  # repeats across rounds: first measurement stands
        trials = [_make_trial(rec.id, len(written) + i, rnd, pool[a], job.problem,
                              job.space.lookup(pool[a], job.problem.keys), None, 0.0, {}) for i, a in enumerate(arch_ids)]
        store.save_round(rec.id, "t", trials, RoundRecord(rec.id, rnd, len(written) + 50, 0, 50, None, None, 0.0), None)
        written += trials
        running.add(trials)
        n = store.get_job(rec.id).n_trials
        expected = [t.number for t in front_of(written, job.problem)]
        assert expected and any(not t.feasible for t in written)
        assert [t.number for t in fronts.get(rec.id, n, job.problem)] == expected
        assert [t.number for t in running.trials] == expected
    assert [t.number for t in StoredFronts(store).get(rec.id, n, job.problem)] == expected  # from scratch
