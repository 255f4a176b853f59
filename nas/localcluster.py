"""The docker-compose topology as local processes: migrations, a Ray head and workers, the
API and runners, on one machine's loopback. What the cluster tests and ``benchmarks/scale.py``
start; useful by hand too (``python -m nas.localcluster DATABASE_URL``).

Every process gets the same environment as its compose service: ``NAS_DATABASE_URL``,
``RAY_ADDRESS``, and Ray's token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``: Ray 2.5x+
authenticates every node and driver of a cluster with it). Processes are stopped by pid,
never with ``ray stop``, which would also stop unrelated Ray instances on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .runner import die_with_parent

__all__ = ["LocalCluster", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalCluster:
    """``start()`` brings up: migrations, ``ray start --head``, ``workers`` x ``ray start
    --address``, ``nas serve --runners 0`` (the API) and ``runners`` x ``nas runner``.

    ``ray_cluster=False`` starts no Ray processes: each runner starts its own local Ray (the
    embedded default), for comparison."""

    database_url: str
    runners: int = 2
    workers: int = 1
    cpus_per_node: int = 1
    stale_after_s: float = 30.0
    ray_cluster: bool = True
    log_dir: Path | None = None
    api_url: str = ""
    token: str = ""
    ray_address: str = ""
    env: dict[str, str] = field(default_factory=dict)
    runner_procs: list[subprocess.Popen] = field(default_factory=list)
    api_proc: subprocess.Popen | None = None
    _ray_dir: Path | None = None
    _api_port: int = 0

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> LocalCluster:
        self.log_dir = Path(self.log_dir or tempfile.mkdtemp(prefix="nas-cluster-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # a short path: Ray's unix sockets live under it (108-character limit)
        self._ray_dir = Path(tempfile.mkdtemp(prefix="nasray", dir="/tmp"))
        port = free_port()
        self.ray_address = f"127.0.0.1:{port}" if self.ray_cluster else ""
        self.env = dict(os.environ, NAS_DATABASE_URL=self.database_url, RAY_ADDRESS=self.ray_address,
                        RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(16), RAY_USAGE_STATS_ENABLED="0",
                        NAS_CACHE_DIR=str(self.log_dir / "cache"), NAS_ADMIN_TOKEN="nas_" + secrets.token_hex(16))
        if not self.ray_cluster:
            del self.env["RAY_ADDRESS"]
        try:
            self._run([sys.executable, "-m", "nas.cli", "db", "upgrade"], "migrate")
            if self.ray_cluster:
                ray = [sys.executable, "-m", "ray.scripts.scripts", "start"]
                self._run(ray + ["--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                 "--include-dashboard=false", f"--num-cpus={self.cpus_per_node}",
                                 f"--temp-dir={self._ray_dir}"], "ray-head")
                for i in range(self.workers):
                    self.add_worker(i)
            self.start_api()
            for _ in range(self.runners):
                self.add_runner()
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, i: int = 0) -> None:
        self._run([sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={self.ray_address}",
                   "--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus_per_node}"], f"ray-worker{i}")

    def start_api(self, port: int | None = None) -> None:
        self._api_port = port or self._api_port or free_port()
        log = open(self.log_dir / "api.log", "a")  # noqa: SIM115 - the child keeps it
        self.api_proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "serve", "--runners", "0", "--port",
                                          str(self._api_port)], env=self.env, stdout=subprocess.PIPE,
                                         stderr=log, text=True, preexec_fn=die_with_parent)
        t0 = time.monotonic()
        ready = False
        while not ready and time.monotonic() - t0 < 60:
            line = self.api_proc.stdout.readline()
            if not line and self.api_proc.poll() is not None:
                raise RuntimeError(f"the API exited: see {self.log_dir / 'api.log'}")
            ready = "admin token" in line
        if not ready:
            raise RuntimeError("the API did not start within 60 s")
        self.token = self.env["NAS_ADMIN_TOKEN"]  # as in compose: the same token across API restarts
        threading.Thread(target=lambda p=self.api_proc: [None for _ in p.stdout], daemon=True).start()
        self.api_url = f"http://127.0.0.1:{self._api_port}"
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{self.api_url}/api/v1/health", timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the API does not answer /health")

    def add_runner(self) -> subprocess.Popen:
        i = len(self.runner_procs)
        log = open(self.log_dir / f"runner{i}.log", "a")  # noqa: SIM115 - the child keeps it
        # no --join-ray here (compose needs it: a runner container has no Ray node): on one host
        # the head is the runners' local node, and starting a Ray node per runner on two busy
        # cores can time out in Ray's own start-up
        p = subprocess.Popen([sys.executable, "-m", "nas.cli", "runner", "--poll", "0.5", "--stale-after",
                              str(self.stale_after_s)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)
        self.runner_procs.append(p)
        return p

    def stop(self) -> None:
        procs = [p for p in [self.api_proc, *self.runner_procs] if p is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._stop_ray()

    def _stop_ray(self) -> None:
        """Kill every process of this cluster's Ray: those started with its token (the head,
        the workers, the runners' nodes and everything they spawned) or under its temp dir."""
        import psutil

        if self._ray_dir is None:
            return
        token = self.env.get("RAY_AUTH_TOKEN")
        mine = []
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                args = p.info["cmdline"] or []
                env = p.info["environ"] or {}
            except (psutil.Error, TypeError):
                continue
            ours = (token and env.get("RAY_AUTH_TOKEN") == token) or any(
                a == str(self._ray_dir) or a.startswith(f"{self._ray_dir}/") or a.endswith(f"={self._ray_dir}")
                for a in args)
            if ours and p.pid != os.getpid():
                mine.append(p)
        for p in mine:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(mine, timeout=10)
        shutil.rmtree(self._ray_dir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------
    def _run(self, cmd: list[str], name: str) -> None:
        with open(self.log_dir / f"{name}.log", "a") as log:
            proc = subprocess.run(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, timeout=180)
        if proc.returncode:
            raise RuntimeError(f"{name} failed ({proc.returncode}): see {self.log_dir / f'{name}.log'}")

    def busy_ray_worker(self, interval: float = 0.2, exclude: set[int] = frozenset()):
        """A Ray worker using CPU now (evaluating, not an idle actor), or None; ``exclude``: pids to skip."""
        import psutil

        for w in self.ray_workers():
            if w.pid in exclude:
                continue
            try:
                if w.cpu_percent(interval=interval) > 20:
                    return w
            except psutil.Error:
                continue
        return None

    def ray_workers(self) -> list:
        """The Ray worker processes running Tune trials (``ray::ImplicitFunc``)."""
        import psutil

        out = []
        for p in psutil.process_iter(["cmdline", "environ"]):
            try:
                cmd = " ".join(p.info["cmdline"] or [])
                if cmd.startswith("ray::ImplicitFunc") and (p.info["environ"] or {}).get(
                        "RAY_AUTH_TOKEN") == self.env["RAY_AUTH_TOKEN"]:
                    out.append(p)
            except (psutil.Error, TypeError):
                continue
        return out


if __name__ == "__main__":  # pragma: no cover - by hand
    with LocalCluster(sys.argv[1]) as c:
        print(f"API {c.api_url} token {c.token}; Ray {c.ray_address}; logs {c.log_dir}; Ctrl-C stops", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
