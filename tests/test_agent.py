"""The device agent against a real `nas serve`: pull work, profile ONNX exports, post Measurements,
and the API refits that Target's latency model."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.slow

SPEC = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}],
        "strategy": {"name": "random", "batch_size": 8}, "budget": {"evaluations": 8}, "seed": 5,
        "execution": {"backend": "inline"}}


def _http(url: str, token: str, method: str = "GET", body=None):
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_an_agent_profiles_what_the_api_asks_and_the_model_is_refitted(served):
    from nas.agent import Agent, AgentError

    url, token = served
    job = _http(url + "/api/v1/jobs", token, "POST", SPEC)
    t0 = time.monotonic()
    while _http(url + job["url"], token)["state"] != "completed":
        assert time.monotonic() - t0 < 60
        time.sleep(0.2)
    agent = Agent(url, token, "edge-test", backend="onnxruntime", threads=1)
    assert agent.register()["key"] == "edge-test/onnxruntime/t1/b1/space"
    assert agent.run_once(limit=6) == 6
    assert agent.run_once(limit=6) == 2  # the 8 architectures of the job, each once
    assert agent.run_once(limit=6) == 0
    got = _http(url + "/api/v1/targets/edge-test/measurements?limit=100", token)["items"]
    assert len(got) == 8 and all(m["median_ms"] > 0 and m["versions"]["onnxruntime"] for m in got)
    t0 = time.monotonic()
    while True:  # the refits run in the API's background thread, one per post
        try:
            model = _http(url + "/api/v1/targets/edge-test/model", token)
            if model["measured"] == 8:
                break
        except urllib.error.HTTPError as e:
            assert e.code == 404
        assert time.monotonic() - t0 < 60
        time.sleep(0.3)
    assert model["kind"] == "transfer" and model["space"] == "nb201" and model["n_measurements"] == 8
    assert 0 <= model["cv_within_10pct"] <= 1 and model["cv_spearman"] > 0
    with pytest.raises(AgentError, match="HTTP 401"):
        Agent(url, "nas_wrong", "edge-test").register()
    with pytest.raises(AgentError, match="cannot reach the API"):
        Agent("http://127.0.0.1:9", token, "edge-test").register()


def test_an_agent_retries_a_failing_api_and_stops_on_a_rejected_token(monkeypatch):
    from nas.agent import Agent, AgentError

    agent = Agent("http://127.0.0.1:9", "nas_x", "edge-test")
    calls = []

    def flaky(limit=4):
        calls.append(limit)
        if len(calls) < 3:
            raise AgentError("GET /targets/edge-test/work: HTTP 503: restarting")
        raise AgentError("GET /targets/edge-test/work: HTTP 401: token: unknown or revoked")

    monkeypatch.setattr(agent, "register", lambda: {})
    monkeypatch.setattr(agent, "run_once", flaky)
    monkeypatch.setattr("nas.agent.time.sleep", lambda s: None)
    with pytest.raises(AgentError, match="HTTP 401"):
        agent.serve_forever(poll_s=0.01)
    assert len(calls) == 3  # two 503s retried, the 401 ends it
