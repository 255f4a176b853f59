"""API load on loopback: reads of a 100,000-trial job, 200 polling clients while a job writes, submissions/s.

The server is ``nas serve`` (uvicorn, one process, SQLite file, one runner) started here on a
free port. The baseline measured in the same run is ``GET /api/v1/health`` (one ``SELECT 1``):
what a request costs with no work in it.

1. A job with ``--trials`` trials (stored in bulk rounds, as the engine writes them). Then
   ``--requests`` sequential GETs each of its Pareto front, a trials page (50, sorted by
   number, at a random offset) and a page sorted by an objective; p50/p95/p99.
2. ``--clients`` concurrent clients (one keep-alive connection each, as browser tabs hold)
   polling, each every ``--interval`` seconds as the dashboard does, the job list, a job and
   its trials page for ``--seconds`` while the runner executes jobs that write a round of 20
   trials every few milliseconds (two random searches of NB201 queued back to back): errors,
   p50/p95/p99, and the CPU the server, the runner and the clients used.
3. Job submissions (POST /api/v1/jobs) per second, sequential, for ``--submissions`` jobs.

    python benchmarks/api_load.py                       # 100,000 trials, 200 clients, 60 s
    python benchmarks/api_load.py --trials 20000 --clients 50 --seconds 15    # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

SPEC = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}],
        "strategy": {"name": "random", "batch_size": 10}, "budget": {"evaluations": 100}, "seed": 0,
        "execution": {"backend": "inline"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_big_job(db_url: str, n: int) -> str:
    """A completed job with ``n`` trials over NB201 cells, written in rounds of 10,000."""
    from nas.engine import _make_trial, prepare_job
    from nas.storage import RoundRecord, Store

    store = Store(db_url)
    job = prepare_job(dict(SPEC, budget={"evaluations": n}))
    rec = store.create_job(job.spec.model_dump(mode="json", exclude_none=True), space="nb201", strategy="random",
                           seed=0, budget=n, state="running", owner="bench")
    space = job.space
    pool = space.enumerate()
    rng = random.Random(0)
    number = 0
    for rnd in range(0, (n + 9999) // 10000):
        trials = []
        for _ in range(min(10000, n - number)):
            a = pool[rng.randrange(len(pool))]
            metrics = space.lookup(a, job.problem.keys)
            trials.append(_make_trial(rec.id, number, rnd, a, job.problem, metrics, None, 0.0, {"strategy": "bench"}))
            number += 1
        store.save_round(rec.id, "bench", trials, RoundRecord(rec.id, rnd, number, number, len(trials), None, None, 0.0),
                         None)
    store.finish_job(rec.id, "bench", "completed")
    return rec.id


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"n": len(a), "p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99))}


def timed_get(url: str, token: str) -> tuple[float, int]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        status = r.status
    return (time.perf_counter() - t0) * 1e3, status


class _Conn:
    """One keep-alive HTTP/1.1 connection, as a browser tab polling the API holds: a minimal
    client on asyncio streams, so that 200 of them cost the machine little next to the server
    they measure (a general-purpose client spends more per request than the server does)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader = self.writer = None

    async def get(self, path: str) -> int:
        for attempt in (0, 1):  # a connection the server closed while idle is reopened once, as browsers do
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}"
                                  f"\r\n\r\n".encode())
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
                continue
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            await self.reader.readexactly(int(headers["content-length"]))
            if headers.get("connection") == "close":
                self.close()
            return int(lines[0].split(" ", 2)[1])
        raise ConnectionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def poll(base: str, token: str, job_id: str, clients: int, seconds: float, interval: float) -> dict:
    host, port = base.rsplit("/", 1)[1].split(":")
    lat: list[float] = []
    errors: dict[str, int] = {}
    paths = ["/api/v1/jobs?limit=20", f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/trials?limit=50&order=desc"]
    stop = time.monotonic() + seconds

    async def one(i: int) -> None:
        conn = _Conn(host, int(port), token)
        k = i
        await asyncio.sleep(interval * i / clients)  # spread the clients over the interval
        while time.monotonic() < stop:
            t_next = time.monotonic() + interval
            path = paths[k % len(paths)]
            k += 1
            t0 = time.perf_counter()
            try:
                status = await asyncio.wait_for(conn.get(path), 30)
                if status >= 400:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except Exception as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                conn.close()
                continue
            lat.append((time.perf_counter() - t0) * 1e3)
            await asyncio.sleep(max(0.0, t_next - time.monotonic()))
        conn.close()

    await asyncio.gather(*(one(i) for i in range(clients)))
    return {**percentiles(lat), "errors": errors, "requests_per_s": len(lat) / seconds}


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of the server process, its runners, and this process."""
    import psutil

    server = psutil.Process(pid)
    own = psutil.Process()
    t = lambda p: sum(p.cpu_times()[:2])  # noqa: E731
    return {"server": t(server), "runners": sum(t(c) for c in server.children(recursive=True)), "clients": t(own)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between one client's polls")
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "api_load"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nas-api-load-")
    db = f"sqlite:///{tmp}/load.db"
    t0 = time.perf_counter()
    big = make_big_job(db, args.trials)
    t_fill = time.perf_counter() - t0
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "--db", db, "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, NAS_CACHE_DIR=f"{tmp}/cache"))
    token = None
    while token is None:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("nas serve did not start")
        if "admin token" in line:
            token = line.rsplit(" ", 1)[1].strip()
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            timed_get(base + "/api/v1/health", token)
            break
        except OSError:
            time.sleep(0.1)
    results: dict = {"trials": args.trials, "fill_s": t_fill, "reads": {}}
    try:
        rng = random.Random(1)
        reads = {"health (baseline)": lambda: "/api/v1/health",
                 "pareto": lambda: f"/api/v1/jobs/{big}/pareto",
                 "trials page": lambda: f"/api/v1/jobs/{big}/trials?limit=50&offset={rng.randrange(args.trials - 50)}",
                 "trials by accuracy": lambda: (f"/api/v1/jobs/{big}/trials?limit=50&sort=accuracy&order=desc"
                                                f"&offset={rng.randrange(args.trials - 50)}")}
        # computed once per job version (its trial count), then served from memory: the first
        # request of each is timed apart (the Pareto one also builds the job's space: NB201's tables)
        results["pareto_first_ms"] = timed_get(base + reads["pareto"](), token)[0]
        results["sorted_first_ms"] = timed_get(base + reads["trials by accuracy"](), token)[0]
        for name, path in reads.items():
            ms = [timed_get(base + path(), token)[0] for _ in range(args.requests)]
            results["reads"][name] = percentiles(ms)
            print(f"{name}: {results['reads'][name]}", file=sys.stderr, flush=True)
        # 2. polling while jobs write: the random strategy exhausts NB201's 15,625 cells in about a
        # minute at this rate, so a second job is queued behind the first to keep the runner writing
        spec = dict(SPEC, budget={"evaluations": 15_625}, strategy={"name": "random", "batch_size": 20})
        auth = {"Authorization": f"Bearer {token}"}
        writing = [json.loads(urllib.request.urlopen(urllib.request.Request(
            base + "/api/v1/jobs", data=json.dumps(dict(spec, seed=i)).encode(), method="POST",
            headers={**auth, "Content-Type": "application/json"})).read())["id"] for i in range(2)]
        cpu0 = cpu_seconds(proc.pid)
        results["polling"] = asyncio.run(poll(base, token, writing[0], args.clients, args.seconds, args.interval))
        cpu1 = cpu_seconds(proc.pid)
        results["polling"]["cpu_share"] = {k: (cpu1[k] - cpu0[k]) / args.seconds for k in cpu0}
        states = [json.loads(urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/jobs/{j}", headers=auth))
                             .read()) for j in writing]
        results["polling"]["trials_written"] = sum(st["n_trials"] for st in states)
        results["polling"]["writer_busy"] = states[-1]["state"] in ("running", "queued")  # wrote throughout
        print(f"polling: {results['polling']}", file=sys.stderr, flush=True)
        for st in states:
            if st["state"] in ("running", "queued"):
                urllib.request.urlopen(urllib.request.Request(f"{base}/api/v1/jobs/{st['id']}/cancel", method="POST",
                                                              headers=auth)).read()
        # 3. submissions
        body = json.dumps(dict(SPEC, budget={"evaluations": 10})).encode()
        t0 = time.perf_counter()
        for _ in range(args.submissions):
            urllib.request.urlopen(urllib.request.Request(
                base + "/api/v1/jobs", data=body, method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})).read()
        results["submissions_per_s"] = args.submissions / (time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    lines = [f"`python benchmarks/api_load.py {' '.join(sys.argv[1:])}`", "",
             f"A job of {args.trials:,} trials (written in {t_fill:.0f} s); {args.requests} sequential GETs each:", "",
             "| request | p50 (ms) | p95 (ms) | p99 (ms) |", "|---|---|---|---|"]
    for name, r in results["reads"].items():
        lines.append(f"| {name} | {r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} |")
    p = results["polling"]
    lines += ["", f"First Pareto request (computed over all trials, then cached until the job changes): "
              f"{results['pareto_first_ms']:.0f} ms (it also loads the space's tables into the server); first page "
              f"sorted by accuracy (the order of all trials, then cached until the job changes): "
              f"{results['sorted_first_ms']:.0f} ms. The rows above are the requests after those.", "",
              f"{args.clients} clients polling every {args.interval:g} s for {args.seconds:.0f} s while jobs wrote {p['trials_written']} trials"
              f"{'' if p['writer_busy'] else ' (the writer ran out of work before the end)'}: "
              f"{p['n']} requests ({p['requests_per_s']:.0f}/s), errors {p['errors'] or 'none'}, p50 {p['p50']:.1f} ms, "
              f"p95 {p['p95']:.1f} ms, p99 {p['p99']:.1f} ms. CPU (cores busy on average): "
              + ", ".join(f"{k} {v:.2f}" for k, v in p["cpu_share"].items()) + ".", "",
              f"Job submissions: {results['submissions_per_s']:.0f}/s (sequential, each validated and queued)."]
    md = "\n".join(lines)
    print(md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(md + "\n")


if __name__ == "__main__":
    main()
