"""The deployment topology without Docker, and fault tolerance under kills and restarts.

One module-scoped cluster of local processes (``nas.localcluster``): a fresh PostgreSQL
database on the shared server, migrations, ``ray start --head`` and one ``ray start
--address`` worker, the API (``nas serve --runners 0``) and two ``nas runner`` processes.
Jobs go in over HTTP. Each test bounds its waits; the cluster is stopped at the end.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import time
import urllib.error
import urllib.request

import pytest

from nas.localcluster import LocalCluster
from nas.storage import Store

from conftest import postgres_admin_url, postgres_database

pytestmark = [pytest.mark.postgres, pytest.mark.ray, pytest.mark.slow]

FAST = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}],
        "strategy": {"name": "random", "batch_size": 3}, "budget": {"evaluations": 3}}
# latency profiled on this CPU: seconds per evaluation, a window to kill a worker in
PROFILED = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"},
                                                       {"name": "latency_ms", "device": "cpu-eager"}],
            "strategy": {"name": "random", "batch_size": 2}, "budget": {"evaluations": 4}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with postgres_database() as url:
        c = LocalCluster(url, runners=2, workers=1, stale_after_s=4.0, log_dir=tmp_path_factory.mktemp("cluster"))
        with c:
            yield c


def api(c: LocalCluster, path: str, body: dict | None = None, method: str | None = None):
    req = urllib.request.Request(c.api_url + path, data=json.dumps(body).encode() if body is not None else None,
                                 method=method, headers={"Authorization": f"Bearer {c.token}",
                                                         "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def submit(c: LocalCluster, spec: dict, seed: int) -> str:
    return api(c, "/api/v1/jobs", {**spec, "seed": seed})["id"]


def wait(pred, timeout: float, what: str, step: float = 0.2):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        value = pred()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def finished(store: Store, job_id: str, timeout: float = 240.0):
    return wait(lambda: (r := store.get_job(job_id)).state in ("completed", "failed", "cancelled") and r,
                timeout, f"job {job_id} to finish")


def assert_exact(store: Store, job_id: str, budget: int) -> None:
    """Completed, the budget spent exactly, trial numbers contiguous, no architecture measured
    twice (a strategy may propose one again: that trial re-uses the first, marked ``cached``)."""
    rec = store.get_job(job_id)
    assert rec.state == "completed", (rec.state, rec.error, store.logs(job_id))
    trials = store.load_trials(job_id)
    assert len(trials) == rec.n_trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state == "complete" for t in trials)
    measured = [t for t in trials if t.counts_as_evaluation]
    assert len(measured) == rec.n_evaluations == budget
    assert len({t.arch_id for t in measured}) == len(measured)


def test_several_jobs_end_to_end(cluster):
    store = Store(cluster.database_url)
    jobs = [submit(cluster, FAST, seed) for seed in range(3)]
    for j in jobs:
        finished(store, j)
    for j in jobs:
        assert_exact(store, j, 3)
        assert api(cluster, f"/api/v1/jobs/{j}")["n_trials"] == 3
    owners = {line for j in jobs for _, line in store.logs(j) if "resuming" in line}
    assert not owners  # none was claimed twice


def test_kill_9_of_a_ray_worker_retries_the_trial(cluster):
    store = Store(cluster.database_url)
    job = submit(cluster, PROFILED, seed=10)
    victim = wait(lambda: store.get_job(job).state == "running" and cluster.busy_ray_worker(interval=0.3), 120,
                  "a Ray worker busy evaluating the job")
    victim.send_signal(signal.SIGKILL)
    # had Tune not retried the killed evaluation, its trial would be stored failed: assert_exact checks
    finished(store, job, timeout=300)
    assert_exact(store, job, 4)


def test_kill_9_of_a_runner_hands_its_job_to_another(cluster):
    store = Store(cluster.database_url)
    spec = {**FAST, "strategy": {"name": "random", "batch_size": 3}, "budget": {"evaluations": 9}}
    job = submit(cluster, spec, seed=20)
    rec = wait(lambda: (r := store.get_job(job)).state == "running" and r.n_trials >= 3 and r, 120,
               "the job's first rounds")
    pid = int(rec.owner.split(":")[1])  # owner is host:pid:runner-id
    os.kill(pid, signal.SIGKILL)
    before = [(t.number, t.arch_id, t.values) for t in store.load_trials(job)]
    cluster.runner_procs[:] = [p for p in cluster.runner_procs if p.pid != pid]
    cluster.add_runner()  # back to two, for the tests that follow
    finished(store, job, timeout=240)
    assert_exact(store, job, 9)
    assert store.get_job(job).owner is None
    logs = [m for _, m in store.logs(job)]
    assert any("resuming at round" in m for m in logs), logs  # it continued from its stored rounds
    after = [(t.number, t.arch_id, t.values) for t in store.load_trials(job)]
    assert after[:len(before)] == before  # what was stored before the kill is kept as it was


def test_an_api_restart_does_not_touch_a_running_job(cluster):
    store = Store(cluster.database_url)
    spec = {**FAST, "strategy": {"name": "random", "batch_size": 1}, "budget": {"evaluations": 1000},
            "execution": {"backend": "inline"}}  # a thousand short rounds: still running across the restart
    job = submit(cluster, spec, seed=30)
    wait(lambda: store.get_job(job).n_trials >= 2, 120, "the job's first round")
    port = int(cluster.api_url.rsplit(":", 1)[1])
    cluster.api_proc.send_signal(signal.SIGKILL)
    cluster.api_proc.wait(timeout=10)
    with pytest.raises(urllib.error.URLError):
        api(cluster, f"/api/v1/jobs/{job}")
    down = store.get_job(job)
    assert down.state == "running", "the job ended before the API was killed: give it more rounds"
    wait(lambda: store.get_job(job).n_trials > down.n_trials, 60, "progress while the API is down")
    cluster.start_api(port)
    finished(store, job)
    assert_exact(store, job, 1000)
    seen = api(cluster, f"/api/v1/jobs/{job}")
    page = api(cluster, f"/api/v1/jobs/{job}/trials?limit=1000")
    n = store.get_job(job).n_trials
    assert seen["state"] == "completed" and seen["n_trials"] == page["total"] == n
    assert len(page["items"]) == min(n, 1000) and page["items"][-1]["number"] == min(n, 1000) - 1


def test_database_connections_dropped_during_a_job(cluster):
    """Every connection of the job's database terminated (twice) mid-job: the store retries
    the interrupted transaction on a new connection and the job finishes as if nothing happened."""
    import sqlalchemy as sa

    store = Store(cluster.database_url)
    spec = {**FAST, "strategy": {"name": "random", "batch_size": 1}, "budget": {"evaluations": 1000},
            "execution": {"backend": "inline"}}
    job = submit(cluster, spec, seed=40)
    wait(lambda: store.get_job(job).n_trials >= 2, 120, "the job's first round")
    admin = sa.create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    name = sa.engine.make_url(cluster.database_url).database
    try:
        for i in range(2):
            state = store.get_job(job).state
            if i and state != "running":
                break  # ended (or failed cleanly) after the first drop: checked below
            assert state == "running", "the job ended before the drop: give it more rounds"
            with admin.connect() as conn:
                killed = conn.execute(sa.text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                              "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name}).scalar()
            assert killed >= 1
            time.sleep(1.5)
    finally:
        admin.dispose()
    rec = finished(store, job)
    assert rec.state == "completed", store.logs(job)[-3:]  # the store reconnected: no failure at all
    assert_exact(store, job, 1000)


def test_four_runners_eight_jobs_each_exactly_once(cluster):
    store = Store(cluster.database_url)
    extra = [cluster.add_runner(), cluster.add_runner()]
    try:
        spec = {**FAST, "execution": {"backend": "inline"}, "budget": {"evaluations": 12}}
        jobs = [submit(cluster, spec, seed=100 + i) for i in range(8)]
        for j in jobs:
            finished(store, j, timeout=180)
        for j in jobs:
            assert_exact(store, j, 12)
            assert not [m for _, m in store.logs(j) if "resuming" in m]
    finally:
        for p in extra:
            p.send_signal(signal.SIGTERM)
        for p in extra:
            p.wait(timeout=30)
            cluster.runner_procs.remove(p)


# -- a real PostgreSQL restart, on a private server this test owns ------------------------
PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of its own (initdb as the ``postgres`` user, a free port), so the
    test may stop and start it; the shared server is never touched."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or not PG_BIN or shutil.which("runuser") is None:
        pytest.skip("a private PostgreSQL needs root (to run initdb as postgres) and Debian's postgresql binaries")
    from nas.localcluster import free_port

    import tempfile

    # not under pytest's tmp_path: its parents are private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="nas-pg-", dir="/tmp"))
    shutil.chown(root, "postgres")
    port = free_port()
    bin_ = PG_BIN[-1]

    def pg_ctl(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", str(bin_ / "pg_ctl"), "-D", str(root / "data"), "-w",
                        "-l", str(root / "log"), "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                        *args], check=True, capture_output=True, timeout=60)

    subprocess.run(["runuser", "-u", "postgres", "--", str(bin_ / "initdb"), "-D", str(root / "data"), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True, timeout=120)
    pg_ctl("start")
    subprocess.run(["runuser", "-u", "postgres", "--", str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                    "nas"], check=True, capture_output=True, timeout=60)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nas", pg_ctl
    finally:
        try:
            pg_ctl("-m", "immediate", "stop")
        except Exception:
            pass
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_restarted_during_a_job(private_postgres, tmp_path):
    """The server stopped for two seconds mid-job, then a fast restart: the runner reconnects and
    the job finishes exactly."""
    import subprocess
    import sys

    from nas.engine import prepare_job

    url, pg_ctl = private_postgres
    store = Store(url)
    spec = prepare_job({**FAST, "strategy": {"name": "random", "batch_size": 1}, "budget": {"evaluations": 400},
                        "execution": {"backend": "inline"}, "seed": 1}).spec
    job = store.create_job(spec.model_dump(mode="json", exclude_none=True), space="nb201", strategy="random",
                           seed=1, budget=400, state="queued").id
    with open(tmp_path / "runner.log", "w") as log:
        runner = subprocess.Popen([sys.executable, "-m", "nas.cli", "runner", "--poll", "0.2", "--stale-after", "3"],
                                  env=dict(os.environ, NAS_DATABASE_URL=url), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait(lambda: store.get_job(job).n_trials >= 20, 120, "the job's first rounds")
        pg_ctl("-m", "fast", "stop")
        time.sleep(2.0)  # the runner's writes fail meanwhile
        pg_ctl("start")
        n = store.get_job(job).n_trials
        wait(lambda: store.get_job(job).n_trials > n or store.get_job(job).state != "running", 60,
             "progress after the restart")
        pg_ctl("-m", "fast", "restart")
        rec = finished(store, job, timeout=300)
        # the store retries a transaction the outage broke (for up to ~8 s), so the job goes on
        assert rec.state == "completed", store.logs(job)[-3:]
        assert_exact(store, job, 400)
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()
        store.dispose()
