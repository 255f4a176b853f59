"""Scaling check: the same jobs on one runner with its own local Ray (the embedded default)
and on the compose topology as local processes (two runners, a Ray head and a Ray worker),
both on a fresh PostgreSQL database; then the time from ``kill -9`` of a busy Ray worker to
its trial's retry.

On this 2-core machine this is a scaling check, not a speed-up claim: both setups share the
same two cores. Reported per setup: trials per minute (all jobs, from submission to the last
completion), overhead per trial (the jobs' running time, claim to completion, summed and
divided by the trials, minus the mean evaluation time: with two runners the jobs run side by
side on the same cores, so this includes their contention), the spread of the per-job
running times, and how many jobs a runner took over from another (0 unless a heartbeat was
missed).

Kill -> retry: a job whose evaluations profile networks on this CPU (seconds each); a busy
``ray::ImplicitFunc`` worker is killed ``--kills`` times; for each, the time until a new
worker process is busy with the retried evaluation, and until the job's next round is stored.

    python benchmarks/scale.py                 # 4 jobs x 24 evaluations, 3 kills (~4 min)
    python benchmarks/scale.py --jobs 2 --kills 1 --evaluations 12      # quicker
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from nas.localcluster import LocalCluster  # noqa: E402
from nas.storage import Store  # noqa: E402

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
JOB = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}],
       "strategy": {"name": "random", "batch_size": 4}}
PROFILED = {"space": {"name": "nb201"},
            "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "cpu-eager"}],
            "strategy": {"name": "random", "batch_size": 2}}


def database(admin_url: str):
    import sqlalchemy as sa

    name = f"nas_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False), drop


def post(c: LocalCluster, spec: dict) -> str:
    req = urllib.request.Request(f"{c.api_url}/api/v1/jobs", data=json.dumps(spec).encode(),
                                 headers={"Authorization": f"Bearer {c.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["id"]


def wait_done(store: Store, jobs: list[str], timeout: float = 900) -> dict[str, float]:
    t0, done = time.monotonic(), {}
    while len(done) < len(jobs):
        for j in jobs:
            if j not in done and store.get_job(j).state in ("completed", "failed", "cancelled"):
                done[j] = time.monotonic()
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"jobs not finished after {timeout} s")
        time.sleep(0.2)
    return done


def run_setup(label: str, admin_url: str, n_jobs: int, evaluations: int, **cluster_kw) -> dict:
    url, drop = database(admin_url)
    try:
        with LocalCluster(url, **cluster_kw) as c:
            store = Store(url, migrate=False)
            # warm-up: Ray start-up in the runners (local Ray is started on the first job)
            warm = [post(c, {**JOB, "budget": {"evaluations": 4}, "seed": 999 + i}) for i in range(cluster_kw["runners"])]
            wait_done(store, warm)
            t0 = time.monotonic()
            jobs = [post(c, {**JOB, "budget": {"evaluations": evaluations}, "seed": i}) for i in range(n_jobs)]
            done = wait_done(store, jobs)
            wall = max(done.values()) - t0
            recs = [store.get_job(j) for j in jobs]
            assert all(r.state == "completed" for r in recs), [(r.state, r.error) for r in recs]
            trials = [t for j in jobs for t in store.load_trials(j)]
            per_job = [done[j] - t0 for j in jobs]
            takeovers = sum(any("resuming" in m for _, m in store.logs(j)) for j in jobs)
            # per-job elapsed time from its start (claim) to completion: what one runner spends on it
            busy = [(r.finished_at - r.started_at).total_seconds() for r in recs]
            eval_s = statistics.mean(t.duration_s or 0.0 for t in trials)
            n = len(trials)
            runners = cluster_kw["runners"]
            return {"setup": label, "jobs": n_jobs, "trials": n, "wall_s": wall, "trials_per_min": 60 * n / wall,
                    "overhead_ms": 1000 * (sum(busy) / n - eval_s) if n else float("nan"),
                    "eval_ms": 1000 * eval_s, "job_s_median": statistics.median(busy),
                    "job_s_spread": (max(busy) - min(busy)), "runners": runners, "takeovers": takeovers,
                    "finish_s": sorted(per_job)}
    finally:
        drop()


def kill_retry(admin_url: str, kills: int) -> list[tuple[float, float]]:
    url, drop = database(admin_url)
    out = []
    try:
        with LocalCluster(url, runners=1, workers=1) as c:
            store = Store(url, migrate=False)
            job = post(c, {**PROFILED, "budget": {"evaluations": 2 * (kills + 2)}, "seed": 7})
            for _ in range(kills):
                victim = None
                deadline = time.monotonic() + 300
                while victim is None:
                    if time.monotonic() > deadline:
                        raise SystemExit("no busy Ray worker to kill within 300 s")
                    if store.get_job(job).state in ("completed", "failed"):
                        raise SystemExit("the job ended before every kill was made: raise --kills' budget")
                    victim = c.busy_ray_worker()
                n_before = store.get_job(job).n_trials
                victim.send_signal(signal.SIGKILL)
                t_kill = time.monotonic()
                old = {w.pid for w in c.ray_workers()}
                t_retry = None
                # the round is not over until the killed evaluation ran again, so a new worker
                # process before the round is stored can only be its retry
                while t_retry is None and time.monotonic() - t_kill < 300:
                    if c.busy_ray_worker(exclude=old | {victim.pid}) is not None:
                        t_retry = time.monotonic() - t_kill
                while store.get_job(job).n_trials <= n_before:
                    if time.monotonic() - t_kill > 300:
                        raise SystemExit("the round with the killed evaluation was not stored within 300 s")
                    time.sleep(0.05)
                out.append((t_retry, time.monotonic() - t_kill))
            wait_done(store, [job])
            rec = store.get_job(job)
            trials = store.load_trials(job)
            assert rec.state == "completed" and all(t.state == "complete" for t in trials), rec.error
            assert [t.number for t in trials] == list(range(len(trials)))
    finally:
        drop()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--evaluations", type=int, default=24)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--postgres", default=ADMIN_URL, help="admin URL of the PostgreSQL server")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scale.md"))
    args = p.parse_args(argv)

    rows = [run_setup("1 runner, local Ray (embedded default)", args.postgres, args.jobs, args.evaluations,
                      runners=1, workers=0, ray_cluster=False),
            run_setup("2 runners, Ray head + 1 worker", args.postgres, args.jobs, args.evaluations,
                      runners=2, workers=1, cpus_per_node=1)]
    kills = kill_retry(args.postgres, args.kills) if args.kills else []
    base = rows[0]["trials_per_min"]
    lines = [f"`python benchmarks/scale.py --jobs {args.jobs} --evaluations {args.evaluations} --kills {args.kills}` "
             f"({time.strftime('%Y-%m-%d')}, 2 cores, PostgreSQL on loopback; nb201 accuracy x raspi4 latency, "
             f"random search, rounds of 4, one Ray Tune experiment per round)", "",
             "| setup | jobs x trials | trials/min | vs 1 runner | overhead/trial (ms) | evaluation (ms) | "
             "job wall time median (spread) s | jobs taken over |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['jobs']} x {r['trials'] // r['jobs']} | {r['trials_per_min']:.0f} | "
                     f"{r['trials_per_min'] / base:.2f}x | {r['overhead_ms']:.0f} | {r['eval_ms']:.1f} | "
                     f"{r['job_s_median']:.1f} ({r['job_s_spread']:.1f}) | {r['takeovers']} |")
    if kills:
        worker = [k[0] for k in kills]
        stored = [k[1] for k in kills]
        lines += ["", "| kill -9 of a busy Ray worker (cpu-eager profiling job) | median | min | max | n |",
                  "|---|---|---|---|---|",
                  f"| kill -> retried evaluation running on a new worker (s) | {statistics.median(worker):.1f} | "
                  f"{min(worker):.1f} | {max(worker):.1f} | {len(kills)} |",
                  f"| kill -> the round with the retried trial stored (s) | {statistics.median(stored):.1f} | "
                  f"{min(stored):.1f} | {max(stored):.1f} | {len(kills)} |"]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
