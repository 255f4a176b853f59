"""Tests of ``nas.storage``: migrations, the ``Store`` contract (one writer per job, atomic
rounds, deduplicated architectures), the JSON round trip of the records, and ``run_job``
end to end. Every test that takes ``store_url`` runs on SQLite and on PostgreSQL (its own
database, dropped afterwards; skipped with a reason when no server answers).
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import IntegrityError

from nas import JobConflictError, JobNotFoundError, StorageError, run_job
from nas.storage import JOB_STATES, JobRecord, RoundRecord, Store, TrialRecord
from nas.storage.models import Base
from spaces import Architecture
from spaces.nb201 import EDGES, OPS

VERSION_TABLE = "nas_alembic_version"
TABLES = {"jobs", "trials", "architectures", "job_rounds", "job_logs"}


# -- helpers -------------------------------------------------------------------------
def nb201_arch(i: int) -> Architecture:
    """The i-th nb201 cell in base-5 order (built directly: no table needed)."""
    ops = [OPS[(i // 5 ** k) % 5] for k in range(len(EDGES))]
    return Architecture("nb201", "1", dict(zip(EDGES, ops)))


def trial(job_id: str, number: int, rnd: int = 0, arch: int | None = None, state: str = "complete") -> TrialRecord:
    a = nb201_arch(number if arch is None else arch)
    if state != "complete":
        return TrialRecord(job_id, number, rnd, a.to_dict(), state, error="boom", feasible=False, duration_s=0.5)
    acc, lat = 80.0 + number % 17 / 3, 10.0 + number % 7
    return TrialRecord(job_id, number, rnd, a.to_dict(), "complete",
                       values={"accuracy": acc, "latency_ms@raspi4": lat},
                       metrics={"accuracy": acc, "latency_ms@raspi4": lat, "params": 1.5e6},
                       constraints=[lat - 12.0], feasible=lat <= 12.0,
                       source={"strategy": "random", "round": rnd}, sampler={"params": a.params_dict()},
                       duration_s=0.01 * number)


def round_record(job_id: str, rnd: int, n_trials: int) -> RoundRecord:
    return RoundRecord(job_id=job_id, round=rnd, n_trials=n_trials, n_evaluations=n_trials, n_screened=100,
                       hypervolume=0.5, best={"accuracy": 90.0}, seconds=0.1, info={"new_evaluations": 5})


def new_job(store: Store, owner: str | None = "me", state: str = "running", **kw) -> JobRecord:
    return store.create_job({"space": {"name": "nb201"}}, space="nb201", strategy="random", seed=0, budget=10,
                            state=state, owner=owner, **kw)


def count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def head_revision(store: Store) -> str:
    return ScriptDirectory.from_config(store.alembic_config()).get_current_head()


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.dispose()


# -- migrations ----------------------------------------------------------------------
def test_migrations_create_schema_with_own_version_table(store):
    tables = set(sa.inspect(store.engine).get_table_names())
    assert TABLES <= tables
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables  # Optuna's (or anyone's) alembic table is left alone
    assert store.current_revision() == head_revision(store)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [
            head_revision(store)]


def test_upgrade_twice_is_idempotent(store):
    job = new_job(store)
    store.save_round(job.id, "me", [trial(job.id, 0)], round_record(job.id, 0, 1), b"s")
    before = set(sa.inspect(store.engine).get_table_names())
    store.upgrade()
    store.upgrade()
    Store(store.url).dispose()  # a second process opening the same database migrates again
    assert set(sa.inspect(store.engine).get_table_names()) == before
    assert store.current_revision() == head_revision(store)
    assert count(store, VERSION_TABLE) == 1
    assert store.count_trials(job.id) == 1


def test_models_match_migrations(store):
    with store.engine.connect() as conn:
        # the version table is alembic's own, not in the models: tell the comparison its name
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        assert compare_metadata(ctx, Base.metadata) == []


def test_old_database_upgrades_and_keeps_rows(sqlite_url):
    old = Store(sqlite_url, migrate=False)
    old.upgrade("0001")
    assert old.current_revision() == "0001"
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with old.engine.begin() as conn:  # the columns of revision 0001, as an old release wrote them
        conn.execute(sa.text(
            "INSERT INTO jobs (id, name, space, strategy, spec, state, seed, budget, n_trials, n_evaluations, "
            "rounds, created_at, updated_at) VALUES ('oldjob', 'legacy', 'nb201', 'random', :spec, 'completed', "
            "7, 20, 0, 0, 0, :now, :now)"), {"spec": json.dumps({"space": {"name": "nb201"}}), "now": now})
    old.dispose()

    store = Store(sqlite_url)
    try:
        assert store.current_revision() == head_revision(store)
        job = store.get_job("oldjob")
        assert (job.name, job.space, job.state, job.seed, job.budget) == ("legacy", "nb201", "completed", 7, 20)
        assert job.spec == {"space": {"name": "nb201"}}
        assert job.created_at == now
        assert [j.id for j in store.list_jobs()] == ["oldjob"]
    finally:
        store.dispose()


def test_unreachable_database_is_a_storage_error(tmp_path):
    (tmp_path / "dir.db").mkdir()  # a directory where the file should be
    with pytest.raises(StorageError, match="dir.db"):
        Store(f"sqlite:///{tmp_path / 'dir.db'}")


# -- jobs ----------------------------------------------------------------------------
def test_create_get_list_jobs(store):
    states = ["queued", "running", "queued", "completed", "queued"]
    created = [new_job(store, owner=None, state=s, name=f"job{i}") for i, s in enumerate(states)]
    got = store.get_job(created[1].id)
    assert got == created[1]
    assert got.created_at.tzinfo is not None and got.spec == {"space": {"name": "nb201"}}
    assert (got.n_trials, got.n_evaluations, got.rounds, got.hypervolume) == (0, 0, 0, None)

    everything = store.list_jobs()
    assert [j.id for j in everything] == [j.id for j in reversed(created)]  # newest first
    pages = [store.list_jobs(limit=2, offset=o) for o in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [j.id for j in itertools.chain(*pages)] == [j.id for j in everything]

    queued = store.list_jobs(state="queued")
    assert {j.id for j in queued} == {c.id for c, s in zip(created, states) if s == "queued"}
    assert all(j.state == "queued" for j in queued)
    assert [j.id for j in store.list_jobs(state="queued", limit=1, offset=1)] == [queued[1].id]
    assert store.list_jobs(state="failed") == []


def test_list_jobs_bad_state_names_the_field(store):
    with pytest.raises(ValueError, match="state") as e:
        store.list_jobs(state="done")
    assert "'done'" in str(e.value) and all(s in str(e.value) for s in JOB_STATES)


def test_unknown_job_raises_not_found(store):
    with pytest.raises(JobNotFoundError, match="nope") as e:
        store.get_job("nope")
    assert e.value.job_id == "nope"
    with pytest.raises(JobNotFoundError):
        store.claim_job("nope", "me")
    assert isinstance(e.value, LookupError)


# -- one writer per job, atomic rounds -----------------------------------------------------
def test_save_round_persists_everything(store):
    job = new_job(store)
    trials = [trial(job.id, i) for i in range(4)] + [trial(job.id, 4, state="fail")]
    store.save_round(job.id, "me", trials, round_record(job.id, 0, 5), b"state-0", hypervolume=0.25)
    got = store.get_job(job.id, with_state=True)
    assert (got.n_trials, got.n_evaluations, got.rounds, got.hypervolume) == (5, 5, 1, 0.25)
    assert got.strategy_state == b"state-0"
    assert store.load_trials(job.id) == trials
    assert store.load_trials(job.id, states=["fail"]) == trials[4:]
    assert store.load_rounds(job.id) == [round_record(job.id, 0, 5)]
    assert store.count_trials(job.id) == 5


def test_save_round_is_atomic(store):
    job = new_job(store)
    first = [trial(job.id, i) for i in range(3)]
    store.save_round(job.id, "me", first, round_record(job.id, 0, 3), b"state-0", hypervolume=0.25)
    n_archs = count(store, "architectures")

    # round 1 repeats trial number 2: the insert fails, and nothing of the round may stay
    second = [trial(job.id, 3, 1, arch=500), trial(job.id, 4, 1, arch=501), trial(job.id, 2, 1, arch=502)]
    with pytest.raises((IntegrityError, StorageError)):
        store.save_round(job.id, "me", second, round_record(job.id, 1, 6), b"state-1", hypervolume=0.75)

    got = store.get_job(job.id, with_state=True)
    assert (got.n_trials, got.n_evaluations, got.rounds, got.hypervolume) == (3, 3, 1, 0.25)
    assert got.strategy_state == b"state-0"
    assert store.load_trials(job.id) == first
    assert [r.round for r in store.load_rounds(job.id)] == [0]
    assert count(store, "architectures") == n_archs

    # the store is still usable: the corrected round goes in
    second[2] = trial(job.id, 5, 1, arch=502)
    store.save_round(job.id, "me", second, round_record(job.id, 1, 6), b"state-1", hypervolume=0.75)
    assert [t.number for t in store.load_trials(job.id)] == list(range(6))
    assert store.get_job(job.id, with_state=True).strategy_state == b"state-1"


def test_save_round_by_non_owner_writes_nothing(store):
    job = new_job(store, owner="me")
    with pytest.raises(JobConflictError, match=job.id):
        store.save_round(job.id, "intruder", [trial(job.id, 0)], round_record(job.id, 0, 1), b"theirs")
    got = store.get_job(job.id, with_state=True)
    assert (got.n_trials, got.rounds, got.strategy_state, got.owner) == (0, 0, None, "me")
    assert store.count_trials(job.id) == 0
    assert count(store, "architectures") == 0 and count(store, "job_rounds") == 0


def test_claim_job_of_live_owner_conflicts_unless_stolen(store):
    job = new_job(store, owner="other", state="running")
    with pytest.raises(JobConflictError, match="other"):
        store.claim_job(job.id, "me")
    assert store.get_job(job.id).owner == "other"

    claimed = store.claim_job(job.id, "me", steal_from="other")
    assert (claimed.owner, claimed.state) == ("me", "running")
    assert store.get_job(job.id).owner == "me"
    # the old owner can no longer write, the new one can
    with pytest.raises(JobConflictError):
        store.save_round(job.id, "other", [trial(job.id, 0)], None, None)
    store.save_round(job.id, "me", [trial(job.id, 0)], None, None)
    assert store.count_trials(job.id) == 1


def test_claim_queued_or_own_job(store):
    queued = new_job(store, owner=None, state="queued")
    claimed = store.claim_job(queued.id, "me")
    assert (claimed.owner, claimed.state) == ("me", "running") and claimed.started_at is not None
    assert store.claim_job(queued.id, "me").owner == "me"  # re-claiming one's own job is fine


def test_finish_job(store):
    job = new_job(store, owner="me")
    with pytest.raises(JobConflictError):
        store.finish_job(job.id, "other", "completed")
    store.finish_job(job.id, "me", "failed", error="RuntimeError: x")
    got = store.get_job(job.id)
    assert (got.state, got.owner, got.error) == ("failed", None, "RuntimeError: x")
    assert got.finished_at is not None


def test_architectures_are_deduplicated_across_jobs(store):
    a, b = new_job(store, owner="a"), new_job(store, owner="b")
    store.save_round(a.id, "a", [trial(a.id, i, arch=i) for i in range(4)], None, None)
    # job b measures archs 2..5: 2 and 3 are already stored; arch 5 twice in one batch
    store.save_round(b.id, "b", [trial(b.id, 0, arch=2), trial(b.id, 1, arch=3), trial(b.id, 2, arch=4),
                                 trial(b.id, 3, arch=5), trial(b.id, 4, arch=5)], None, None)
    assert count(store, "architectures") == 6
    assert [t.arch for t in store.load_trials(b.id)] == [nb201_arch(i).to_dict() for i in (2, 3, 4, 5, 5)]
    assert store.load_trials(a.id)[2].arch_id == store.load_trials(b.id)[0].arch_id


def test_logs(store):
    job = new_job(store)
    store.log(job.id, "hello")
    store.log(job.id, "careful", level="warning")
    assert store.logs(job.id) == [("info", "hello"), ("warning", "careful")]


# -- records cross process and HTTP boundaries: JSON round trip -----------------------------
def test_trial_record_json_round_trip():
    for t in (trial("j", 3), trial("j", 4, state="fail")):
        back = TrialRecord.from_dict(json.loads(json.dumps(t.to_dict())))
        assert back == t
        assert back.arch_id == t.arch_id == nb201_arch(t.number).arch_id


def test_round_record_json_round_trip():
    r = round_record("j", 2, 30)
    d = json.loads(json.dumps(r.to_dict()))
    assert d == r.to_dict()
    assert RoundRecord(**d) == r


def test_job_record_json_round_trip(store):
    job = new_job(store)
    store.save_round(job.id, "me", [trial(job.id, 0)], round_record(job.id, 0, 1), b"\x00\xffbinary", hypervolume=0.5)
    rec = store.get_job(job.id)
    d = json.loads(json.dumps(rec.to_dict()))
    assert d == rec.to_dict()
    assert "strategy_state" not in d  # bytes stay in the database
    assert datetime.fromisoformat(d["created_at"]) == rec.created_at
    assert datetime.fromisoformat(d["heartbeat_at"]) == rec.heartbeat_at
    assert d["finished_at"] is None and d["hypervolume"] == 0.5


# -- the engine on each backend ------------------------------------------------------------
def test_run_job_end_to_end(store, tiny_spec):
    result = run_job(tiny_spec, store)
    assert result.state == "completed"
    job = store.get_job(result.job_id)
    assert job.state == "completed" and job.owner is None and job.finished_at is not None
    trials = store.load_trials(result.job_id)
    n = len(trials)
    assert n >= tiny_spec["budget"]["evaluations"]
    assert [t.number for t in trials] == list(range(n))  # contiguous, no gaps or duplicates
    assert job.n_trials == n and job.n_evaluations == tiny_spec["budget"]["evaluations"]
    assert job.rounds == len(store.load_rounds(result.job_id)) > 0
    assert all(t.state == "complete" and set(t.values) == {"accuracy", "latency_ms@raspi4"} for t in trials)
    assert result.pareto and {t.arch_id for t in result.pareto} <= {t.arch_id for t in trials}
    assert job.hypervolume == result.hypervolume is not None


def test_trial_pages_match_a_python_sort_and_follow_new_rounds(store):
    job = new_job(store)
    failed = {3, 8, 11}
    first = [trial(job.id, n, 0, state="fail" if n in failed else "complete") for n in range(25)]
    store.save_round(job.id, "me", first, round_record(job.id, 0, 25), None)

    def expect(trials, key, desc):  # trials without the key last, ties by number
        has = sorted((t for t in trials if t.metrics and key in t.metrics),
                     key=lambda t: ((-1 if desc else 1) * t.metrics[key], t.number))
        return [t.number for t in has] + [t.number for t in trials if not (t.metrics and key in t.metrics)]

    rows, total = store.page_trials(job.id, limit=5, offset=20)
    assert total == 25 and [t.number for t in rows] == [20, 21, 22, 23, 24]
    assert rows[0] == first[20].__class__(**{**first[20].to_dict(), "sampler": None})  # all but the replay data
    rows, total = store.page_trials(job.id, desc=True, limit=3)
    assert [t.number for t in rows] == [24, 23, 22]
    rows, total = store.page_trials(job.id, state="fail")
    assert total == 3 and [t.number for t in rows] == sorted(failed)
    rows, total = store.page_trials(job.id, sort="accuracy", desc=True, limit=25)
    assert [t.number for t in rows] == expect(first, "accuracy", True)
    assert store.page_trials(job.id, limit=5, offset=25) == ([], 25)

    # a new round: the cached order and count of the job's previous version are not served
    second = [trial(job.id, n, 1, arch=n + 100, state="fail" if n % 2 else "complete") for n in range(25, 35)]
    store.save_round(job.id, "me", second, round_record(job.id, 1, 35), None)
    rows, total = store.page_trials(job.id, sort="accuracy", limit=50)
    assert total == 35 and [t.number for t in rows] == expect(first + second, "accuracy", False)
    assert store.page_trials(job.id, state="fail")[1] == 3 + 5


def test_a_revoked_token_stops_working_at_once(store):
    secret, rec = store.create_token("ci", ["read"])
    assert store.verify_token(secret)["scopes"] == ["read"]
    assert store.verify_token(secret)["scopes"] == ["read"]  # now from the cache
    store.revoke_token(rec["id"])
    assert store.verify_token(secret) is None
