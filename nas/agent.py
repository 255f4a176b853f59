"""The device agent: runs on the device, pulls architectures to profile from the API, posts Measurements.

``nas agent --api URL --token T --target NAME [--backend onnxruntime]``. With the
``onnxruntime`` backend the agent downloads each architecture's ONNX export and needs only
ONNX Runtime and numpy (no torch, no search code); with ``eager`` or ``compile`` it builds the
network from its space (torch and this package). HTTP is the standard library's ``urllib``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["Agent", "AgentError"]


class AgentError(RuntimeError):
    pass


class Agent:
    def __init__(self, api: str, token: str, target: str, backend: str = "onnxruntime", threads: int | None = 1,
                 batch: int = 1, timeout: float = 60.0) -> None:
        from latency import Target
        from latency.profilers import get_profiler

        self.api = api.rstrip("/")
        if not self.api.endswith("/api/v1"):
            self.api += "/api/v1"
        self.token, self.timeout = token, timeout
        self.target = Target(target, backend, threads=threads, batch=batch, name=target)
        self.profiler = get_profiler(backend)  # BackendNotInstalledError names the pip command

    # -- HTTP -------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, raw: bool = False) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api + path if path.startswith("/") and not path.startswith("/api/")
                                     else self.api.rsplit("/api/v1", 1)[0] + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                payload = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("detail", detail)
            except ValueError:
                pass
            raise AgentError(f"{method} {path}: HTTP {e.code}: {detail}") from None
        except urllib.error.URLError as e:
            raise AgentError(f"{method} {path}: cannot reach the API at {self.api} ({e.reason})") from None
        return payload if raw else json.loads(payload or b"null")

    # -- work ---------------------------------------------------------------------------
    def register(self) -> dict[str, Any]:
        return self._call("POST", "/targets", self.target.to_dict())

    def run_once(self, limit: int = 4) -> int:
        """Profile one batch of work; the number of measurements posted."""
        work = self._call("GET", f"/targets/{self.target.name}/work?limit={limit}")["items"]
        measurements = [self._profile(item).to_dict() for item in work]
        if measurements:
            self._call("POST", "/measurements", measurements)
        return len(measurements)

    def _profile(self, item: dict[str, Any]):
        import numpy as np

        if self.target.backend == "onnxruntime":
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{item['arch_id']}.onnx"
                path.write_bytes(self._call("GET", item["onnx_url"], raw=True))
                x = np.random.default_rng(0).standard_normal(item["input_shape"]).astype(np.float32)
                return self.profiler.profile(path, self.target, (x,), subject_id=item["arch_id"])
        from spaces import get_space

        space = get_space(item["space"], **item.get("space_config", {}))  # the parent the job searched
        arch = space.from_params(item["params"])
        return self.profiler.profile(space.materialize(arch), self.target,
                                     space.example_inputs(arch, batch=self.target.batch), subject_id=item["arch_id"])

    def serve_forever(self, poll_s: float = 5.0, limit: int = 4, max_backoff_s: float = 300.0) -> None:
        """Pull, profile, post, forever. A failing API (down, restarting, 5xx) is retried with
        exponential backoff; a rejected token or target (401/403/404/422) ends the agent."""
        self.register()
        print(f"agent {self.target.name} ({self.target.backend}) polling {self.api}", file=sys.stderr, flush=True)
        backoff = poll_s
        while True:
            try:
                n = self.run_once(limit)
            except AgentError as e:
                if any(f"HTTP {code}" in str(e) for code in (401, 403, 404, 422)):
                    raise
                print(f"{e}; retrying in {backoff:.0f} s", file=sys.stderr, flush=True)
                time.sleep(backoff)
                backoff = min(backoff * 2, max_backoff_s)
                continue
            backoff = poll_s
            if n:
                print(f"posted {n} measurement(s)", file=sys.stderr, flush=True)
            else:
                time.sleep(poll_s)
