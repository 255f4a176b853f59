"""The search drivers over ordered choices: greedy slimming and the one-shot knapsack, as engine
strategies on ``vit-elastic`` (vit-tiny parent), plus their bad input."""

from __future__ import annotations

import pytest

import spaces
from nas import run_job
from nas.errors import SpecError
from nas.storage import Store
from nas.strategies import KnapsackStrategy, SlimmingStrategy, get_strategy
from nas.strategies._slimming import largest, ordered_choices


def spec(strategy: dict, budget: int, constraints=()) -> dict:
    return {"space": {"name": "vit-elastic", "parent": "vit-tiny"},
            "objectives": [{"name": "top1", "direction": "maximize"}, {"name": "params", "direction": "minimize"}],
            "constraints": list(constraints), "strategy": strategy, "budget": {"evaluations": budget}, "seed": 0,
            "execution": {"backend": "inline"}}


def test_ordered_choices_and_largest():
    space = spaces.get_space("vit-elastic", parent="vit-tiny")
    assert set(ordered_choices(space)) == {c.name for c in space.choices()}
    assert largest(space) == space.largest()
    assert ordered_choices(spaces.get_space("nb201")) == {}  # operations are not ordered


def test_slimming_walks_down_to_the_constraint(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    space = spaces.get_space("vit-elastic", parent="vit-tiny")
    limit = 0.5 * space.evaluate(space.largest(), ["params"])["params"]
    result = run_job(spec({"name": "slimming"}, 200, [{"name": "params", "max": limit}]), store)
    trials = store.load_trials(result.job_id)
    assert trials[0].arch_id == space.largest().arch_id
    steps = [t.source["step"] for t in trials]
    assert steps == sorted(steps) and steps[-1] >= 2
    # every step moves to a measured one-step reduction of the previous one, and params only fall
    path = [space.largest().arch_id] + [t.source["from"] for t in trials if t.source["step"] > 0]
    params = {t.arch_id: t.values["params"] for t in trials}
    walked = list(dict.fromkeys(path))
    assert all(params[a] > params[b] for a, b in zip(walked, walked[1:]))
    # it stops once the current architecture meets the constraint, before the budget is spent
    assert store.get_job(result.job_id).n_evaluations < 200
    assert any(t.values["params"] <= limit for t in trials)


def test_slimming_resume_continues_exactly(tmp_path):
    full = run_job(spec({"name": "slimming", "batch_size": 4}, 24), Store(f"sqlite:///{tmp_path / 'a.db'}"))
    store = Store(f"sqlite:///{tmp_path / 'b.db'}")

    def stop_at(n):
        def progress(p):
            if p.n_evaluations >= n:
                raise KeyboardInterrupt
        return progress

    with pytest.raises(KeyboardInterrupt):
        run_job(spec({"name": "slimming", "batch_size": 4}, 24), store, progress=stop_at(9))
    job_id = store.list_jobs()[0].id
    resumed = run_job(spec({"name": "slimming", "batch_size": 4}, 24), store, resume=job_id)
    a = [t.arch_id for t in Store(f"sqlite:///{tmp_path / 'a.db'}").load_trials(full.job_id)]
    b = [t.arch_id for t in store.load_trials(resumed.job_id)]
    assert a == b


def test_knapsack_scores_each_choice_then_meets_the_budget(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    space = spaces.get_space("vit-elastic", parent="vit-tiny")
    n_singles = 1 + sum(len(v) - 1 for v in ordered_choices(space).values())
    limit = 0.4 * space.evaluate(space.largest(), ["params"])["params"]
    result = run_job(spec({"name": "knapsack", "batch_size": 4}, n_singles + 12, [{"name": "params", "max": limit}]),
                     store)
    trials = store.load_trials(result.job_id)
    phases = [t.source["phase"] for t in trials]
    assert phases[:n_singles] == ["score"] * n_singles and set(phases[n_singles:]) == {"knapsack"}
    # each scoring trial differs from the largest in exactly one choice
    big = space.largest().params
    for t in trials[1:n_singles]:
        assert sum(t.arch["params"][k] != v for k, v in big.items()) == 1
    # the first plan is for the constraint; savings are not additive, so the model over-promises
    # and the next rounds ask for more until a plan meets it
    plans = [t for t in trials if t.source["phase"] == "knapsack"]
    assert plans[0].source["budget"] == pytest.approx(limit) and plans[0].source["correction"] == 1.0
    assert any(t.values["params"] <= limit for t in plans)
    assert max(t.source["correction"] for t in plans) >= 1.0


@pytest.mark.parametrize("cls", [SlimmingStrategy, KnapsackStrategy])
def test_bad_parameters(cls):
    with pytest.raises(SpecError, match="strategy.quality"):
        cls(quality=3)
    with pytest.raises(SpecError, match="strategy.nope"):
        cls(nope=1)


def test_a_space_without_ordered_choices_and_an_unknown_objective_key(tmp_path, tiny_spec):
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    with pytest.raises(SpecError, match="nb201 has no ordered numeric choices"):
        run_job({**tiny_spec, "strategy": {"name": "slimming"}}, store)
    with pytest.raises(SpecError, match="strategy.cost: got 'latency_ms@nowhere'"):
        run_job(spec({"name": "knapsack", "cost": "latency_ms@nowhere"}, 4), store)
    assert get_strategy("knapsack", grid=50).params["grid"] == 50
