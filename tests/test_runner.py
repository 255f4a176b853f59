"""Tests of the job runner: claiming queued jobs, cancel and resume, several runners on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from nas.engine import prepare_job
from nas.errors import JobConflictError
from nas.runner import Runner
from nas.storage import Store


def queue_job(store: Store, budget: int = 20, batch: int = 5, seed: int = 0) -> str:
    spec = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}],
            "strategy": {"name": "random", "batch_size": batch}, "budget": {"evaluations": budget}, "seed": seed,
            "execution": {"backend": "inline"}}
    job = prepare_job(spec)
    rec = store.create_job(job.spec.model_dump(mode="json", exclude_none=True), space="nb201", strategy="random",
                           seed=seed, budget=budget, state="queued")
    return rec.id


def wait_for(pred, timeout: float = 30.0, step: float = 0.05) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(step)
    return False


def test_a_runner_claims_and_completes_a_queued_job(sqlite_url):
    store = Store(sqlite_url)
    job_id = queue_job(store)
    runner = Runner(store, poll_s=0.05)
    assert runner.run_once() == job_id
    rec = store.get_job(job_id)
    assert rec.state == "completed" and rec.n_evaluations == 20 and rec.owner is None
    assert runner.run_once() is None  # nothing left


def test_a_strategy_fault_fails_the_job_keeps_its_trials_and_the_runner_logs_it(sqlite_url, monkeypatch, caplog):
    from nas.strategies import RandomStrategy

    real, calls = RandomStrategy.get_state, {"n": 0}

    def broken(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise TypeError("cannot pickle '_thread.lock' object")
        return real(self)

    monkeypatch.setattr(RandomStrategy, "get_state", broken)
    store = Store(sqlite_url)
    job_id = queue_job(store)
    with caplog.at_level("ERROR", logger="nas.runner"):
        assert Runner(store, poll_s=0.05).run_once() == job_id
    rec = store.get_job(job_id)
    assert rec.state == "failed" and rec.error.startswith("internal error in strategy random (get_state)")
    assert store.count_trials(job_id) == 10  # both rounds of 5 evaluated before the fault are kept
    (record,) = [r for r in caplog.records if job_id in r.getMessage()]
    assert record.exc_info and "cannot pickle" in str(record.exc_info[1])
    assert any(level == "error" and "Traceback" in msg for level, msg in store.logs(job_id))
    assert store.requeue(job_id).state == "queued"  # and it resumes to the end
    monkeypatch.setattr(RandomStrategy, "get_state", real)
    assert Runner(store, poll_s=0.05).run_once() == job_id
    assert store.get_job(job_id).state == "completed" and store.count_trials(job_id) == 20


def test_cancel_a_queued_job_is_immediate_and_a_finished_one_conflicts(sqlite_url):
    store = Store(sqlite_url)
    job_id = queue_job(store)
    assert store.request_cancel(job_id).state == "cancelled"
    assert Runner(store).run_once() is None  # a cancelled job is not claimed
    with pytest.raises(JobConflictError, match="only a queued or running job can be cancelled"):
        store.request_cancel(job_id)
    assert store.requeue(job_id).state == "queued"
    with pytest.raises(JobConflictError, match="only a cancelled or failed job can be resumed"):
        store.requeue(job_id)


@pytest.mark.timing
def test_cancel_stops_a_running_job_within_seconds_and_resume_finishes_it(sqlite_url):
    store = Store(sqlite_url)
    job_id = queue_job(store, budget=3000, batch=1)  # thousands of tiny rounds: long enough to cancel
    runner = Runner(store, poll_s=0.05)
    t = threading.Thread(target=runner.run_once)
    t.start()
    assert wait_for(lambda: store.get_job(job_id).n_trials >= 5)
    t_cancel = time.monotonic()
    store.request_cancel(job_id)
    t.join(timeout=30)
    assert not t.is_alive() and time.monotonic() - t_cancel < 5
    rec = store.get_job(job_id)
    assert rec.state == "cancelled" and 5 <= rec.n_trials < 3000
    done_before = rec.n_trials
    store.requeue(job_id)
    # resume with a smaller remaining budget would be a different spec; finish this one
    Runner(store, poll_s=0.05).run_once()
    rec = store.get_job(job_id)
    assert rec.state == "completed" and rec.n_evaluations == 3000
    numbers = [t.number for t in store.load_trials(job_id)]
    assert numbers == list(range(len(numbers))) and len(numbers) >= done_before


@pytest.mark.timing
@pytest.mark.postgres
def test_two_runners_on_postgresql_run_every_job_exactly_once(postgres_url):
    store = Store(postgres_url)
    jobs = [queue_job(store, budget=10, seed=i) for i in range(6)]
    runners = [Runner(Store(postgres_url), poll_s=0.05, name=f"r{i}") for i in range(2)]
    ran: dict[str, list[str]] = {r.owner: [] for r in runners}

    def work(r: Runner) -> None:
        while True:
            job_id = r.run_once()
            if job_id is None:
                return
            ran[r.owner].append(job_id)

    threads = [threading.Thread(target=work, args=(r,)) for r in runners]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    claimed = [j for v in ran.values() for j in v]
    assert sorted(claimed) == sorted(jobs)  # each exactly once
    assert all(store.get_job(j).state == "completed" for j in jobs)
    assert all(store.get_job(j).n_evaluations == 10 for j in jobs)


@pytest.mark.timing
def test_on_sqlite_one_runner_holds_the_lock_and_a_second_waits_as_a_standby(tmp_path, tiny_spec):
    import threading
    import time

    from nas.runner import Runner
    from nas.storage import Store

    store = Store(f"sqlite:///{tmp_path}/lock.db")
    first, second = Runner(store, poll_s=0.05, name="first"), Runner(store, poll_s=0.05, name="second")
    ran = []
    for r in (first, second):
        r._run = lambda rec, r=r, run=r._run: (ran.append((r.owner, rec.id)), run(rec))
    t1 = threading.Thread(target=first.serve_forever)
    t1.start()
    time.sleep(0.3)
    t2 = threading.Thread(target=second.serve_forever)
    t2.start()
    job = store.create_job(tiny_spec, space="nb201", strategy="random", seed=0, budget=30, state="queued")
    deadline = time.time() + 60
    while store.get_job(job.id).state != "completed" and time.time() < deadline:
        time.sleep(0.05)
    assert ran == [("first", job.id)]  # the standby never claimed
    first.stop()
    t1.join(30)
    job2 = store.create_job(tiny_spec, space="nb201", strategy="random", seed=0, budget=30, state="queued")
    while store.get_job(job2.id).state != "completed" and time.time() < deadline + 60:
        time.sleep(0.05)
    assert ran == [("first", job.id), ("second", job2.id)]  # took over once the lock was released
    second.stop()
    t2.join(30)
