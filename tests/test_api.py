"""Tests of the HTTP API through the app factory (SQLite store), with a real runner for jobs."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from api import Settings, create_app  # noqa: E402
from nas.runner import Runner  # noqa: E402
from nas.storage import Store  # noqa: E402

SPEC = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}],
        "strategy": {"name": "random", "batch_size": 5}, "budget": {"evaluations": 15}, "seed": 0,
        "execution": {"backend": "inline"}}


@pytest.fixture
def env(sqlite_url):
    store = Store(sqlite_url)
    client = TestClient(create_app(Settings(database_url=sqlite_url, max_body_bytes=64 * 1024), store))
    write, _ = store.create_token("ci", ["read", "write"])
    agent, _ = store.create_token("agent", ["agent"])
    reader, _ = store.create_token("reader", ["read"])
    return client, store, {"write": {"Authorization": f"Bearer {write}"}, "agent": {"Authorization": f"Bearer {agent}"},
                           "read": {"Authorization": f"Bearer {reader}"}}


def test_health_version_and_openapi(env):
    client, _, _ = env
    assert client.get("/api/v1/health").json() == {"status": "ok", "database": "ok"}
    assert client.get("/api/v1/version").json()["api"] == "v1"
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/v1/jobs", "/api/v1/jobs/{job_id}/trials", "/api/v1/jobs/{job_id}/pareto",
              "/api/v1/jobs/{job_id}/cancel", "/api/v1/jobs/{job_id}/resume", "/api/v1/spaces", "/api/v1/targets",
              "/api/v1/measurements", "/api/v1/architectures/{arch_id}"):
        assert p in paths


def test_a_job_submitted_over_http_runs_in_a_runner_and_is_browsable(env):
    client, store, tok = env
    r = client.post("/api/v1/jobs", json=SPEC, headers=tok["write"])
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "queued" and r.headers["location"] == job["url"] == f"/api/v1/jobs/{job['id']}"
    assert Runner(store, poll_s=0.05).run_once() == job["id"]
    got = client.get(job["url"]).json()
    assert got["state"] == "completed" and got["n_evaluations"] == 15
    page = client.get(f"{job['url']}/trials", params={"limit": 4, "offset": 2}).json()
    assert page["total"] == 15 and [t["number"] for t in page["items"]] == [2, 3, 4, 5]
    by_lat = client.get(f"{job['url']}/trials", params={"sort": "latency_ms@raspi4", "limit": 100}).json()["items"]
    lat = [t["values"]["latency_ms@raspi4"] for t in by_lat]
    assert lat == sorted(lat)
    acc = [t["values"]["accuracy"] for t in client.get(f"{job['url']}/trials", params={
        "sort": "accuracy", "order": "desc", "limit": 100}).json()["items"]]
    assert acc == sorted(acc, reverse=True)
    front = client.get(f"{job['url']}/pareto").json()
    assert front["items"] and {o["key"] for o in front["objectives"]} == {"accuracy", "latency_ms@raspi4"}
    hv = client.get(f"{job['url']}/hypervolume").json()["items"]
    assert [x["round"] for x in hv] == [0, 1, 2] and hv[-1]["hypervolume"] > 0
    arch = client.get(f"/api/v1/architectures/{front['items'][0]['arch_id']}").json()
    assert "space.materialize(arch)" in arch["snippet"] and arch["space"] == "nb201"
    jobs = client.get("/api/v1/jobs", params={"state": "completed"}).json()
    assert jobs["total"] == 1 and jobs["items"][0]["id"] == job["id"]


def test_cancel_and_resume_over_http(env):
    client, store, tok = env
    job = client.post("/api/v1/jobs", json=SPEC, headers=tok["write"]).json()
    r = client.post(f"{job['url']}/cancel", headers=tok["write"])
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    r = client.post(f"{job['url']}/cancel", headers=tok["write"])
    assert r.status_code == 409 and "only a queued or running job can be cancelled" in r.json()["detail"]
    assert client.post(f"{job['url']}/resume", headers=tok["write"]).json()["state"] == "queued"
    Runner(store, poll_s=0.05).run_once()
    assert client.post(f"{job['url']}/resume", headers=tok["write"]).status_code == 409  # completed


def test_auth_401_without_or_with_a_bad_token_403_without_the_scope(env):
    client, store, tok = env
    assert client.post("/api/v1/jobs", json=SPEC).status_code == 401
    r = client.post("/api/v1/jobs", json=SPEC, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]
    r = client.post("/api/v1/jobs", json=SPEC, headers=tok["read"])
    assert r.status_code == 403 and "lacks the 'write' scope" in r.json()["detail"]
    assert client.post("/api/v1/targets", json={"device": "x", "backend": "eager"}, headers=tok["write"]).status_code == 403
    assert client.get("/api/v1/jobs").status_code == 200  # loopback: reads are open
    remote = TestClient(create_app(Settings(host="0.0.0.0"), store))
    assert remote.get("/api/v1/jobs").status_code == 401  # not loopback: reads need a token too
    assert remote.get("/api/v1/jobs", headers=tok["read"]).status_code == 200
    token_id = next(t["id"] for t in store.list_tokens() if t["name"] == "reader")
    store.revoke_token(token_id)
    assert remote.get("/api/v1/jobs", headers=tok["read"]).status_code == 401


@pytest.mark.parametrize("body, status, field", [
    ({**SPEC, "space": {"name": "nope"}}, 422, "space.name"),
    ({**SPEC, "objectives": [{"name": "speed"}]}, 422, "objectives[0].name"),
    ({**SPEC, "budget": {"evaluations": 0}}, 422, "budget.evaluations"),
    ({**SPEC, "budget": {"evaluations": "many"}}, 422, "budget.evaluations"),
    ([1, 2], 422, "body"),
])
def test_bad_job_specs_are_422_naming_the_field_and_write_nothing(env, body, status, field):
    client, store, tok = env
    r = client.post("/api/v1/jobs", json=body, headers=tok["write"])
    assert r.status_code == status, r.text
    assert field in r.json()["detail"]
    assert store.count_jobs() == 0


def test_malformed_json_oversized_bodies_unknown_ids_and_bad_pages(env):
    client, store, tok = env
    r = client.post("/api/v1/jobs", content=b"{not json", headers={**tok["write"], "content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = client.post("/api/v1/jobs", content=b"x" * (70 * 1024), headers={**tok["write"], "content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    chunked = iter([b"[" + b"1," * 20000, b"1," * 20000 + b"1]"])  # no Content-Length: counted while read
    r = client.post("/api/v1/jobs", content=chunked, headers={**tok["write"], "content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    r = client.get("/api/v1/jobs/doesnotexist")
    assert r.status_code == 404 and "doesnotexist" in r.json()["detail"]
    assert client.get("/api/v1/architectures/zzz").status_code == 404
    assert client.get("/api/v1/spaces/zzz").status_code == 404
    r = client.get("/api/v1/jobs", params={"limit": 0})
    assert r.status_code == 422 and r.json()["field"] == "query.limit"
    assert client.get("/api/v1/jobs", params={"state": "sleeping"}).status_code == 422
    job = client.post("/api/v1/jobs", json=SPEC, headers=tok["write"]).json()
    r = client.get(f"{job['url']}/trials", params={"sort": "colour"})
    assert r.status_code == 422 and "valid: number, accuracy, latency_ms@raspi4" in r.json()["detail"]
    # SQL injection strings are data, nothing more
    evil = "x'; DROP TABLE jobs; --"
    assert client.get(f"/api/v1/jobs/{evil}").status_code == 404
    assert client.post("/api/v1/jobs", json={**SPEC, "name": evil}, headers=tok["write"]).status_code == 202
    assert store.count_jobs() == 2


def test_spaces_targets_and_measurements(env):
    from latency import Measurement, get_target

    client, store, tok = env
    spaces = {s["name"]: s for s in client.get("/api/v1/spaces").json()["items"]}
    assert "nb201" in spaces and "cpu-ort" in spaces["nb201"]["metrics"]["latency_ms"]["devices"]
    names = {t["name"] for t in client.get("/api/v1/targets").json()["items"]}
    assert {"cpu-eager", "cpu-compile", "cpu-ort"} <= names
    r = client.post("/api/v1/targets", json={"device": "pi5", "backend": "onnxruntime", "threads": 4,
                                             "name": "pi5-ort"}, headers=tok["agent"])
    assert r.status_code == 201 and r.json()["key"] == "pi5/onnxruntime/t4/b1/space"
    r = client.post("/api/v1/targets", json={"device": "pi5", "backend": "tensorrt"}, headers=tok["agent"])
    assert r.status_code == 422 and "target.backend: got 'tensorrt'" in r.json()["detail"]
    m = Measurement(get_target("cpu-ort"), "a1", times_ms=(1.0, 1.2, 1.1))
    r = client.post("/api/v1/measurements", json=[m.to_dict()], headers=tok["agent"])
    assert r.status_code == 201 and r.json() == {"stored": 1}
    bad = m.to_dict() | {"times_ms": [1.0, -3.0]}
    r = client.post("/api/v1/measurements", json=[m.to_dict(), bad], headers=tok["agent"])
    assert r.status_code == 422 and "items[1]" in r.json()["detail"] and "negative" in r.json()["detail"]
    got = client.get("/api/v1/targets/cpu-ort/measurements").json()["items"]
    assert len(got) == 1 and got[0]["median_ms"] == pytest.approx(1.1)  # the bad batch stored nothing
    assert client.get("/api/v1/targets/nowhere/measurements").status_code == 404


@pytest.mark.parametrize("patch", [
    {"threads": "ab"}, {"subject": {"x": 1}}, {"machine": 5}, {"versions": {"torch": 2}}, {"target": "cpu"},
    {"target": {"device": "x", "shape": 5}}, {"error": "failed", "times_ms": [float("nan")]}, {"kernels": [{"op": 1}]},
    {"info": {"x": float("inf")}},
])
def test_malformed_measurements_are_422_never_500(env, patch):
    import json as _json

    from latency import Measurement, get_target

    client, _, tok = env
    body = Measurement(get_target("cpu-ort"), "a1", times_ms=(1.0,)).to_dict() | patch
    r = client.post("/api/v1/measurements", content=_json.dumps([body]).encode(),
                    headers={**tok["agent"], "content-type": "application/json"})
    assert r.status_code == 422, r.text
    bad = client.post("/api/v1/targets", json={"device": "x", "shape": 5}, headers=tok["agent"])
    assert bad.status_code == 422 and bad.json()["field"] == "target.shape", bad.text
    bad = client.post("/api/v1/targets", json={"device": "x", "backend": "tvm"}, headers=tok["agent"])
    assert bad.status_code == 422 and bad.json()["field"] == "target.backend", bad.text
    assert "tvm" in bad.json()["detail"] and "onnxruntime" in bad.json()["detail"]


def test_an_agent_token_can_download_what_it_profiles_and_failures_are_not_handed_out_again(env):
    from latency import Measurement, Target

    client, store, tok = env
    client.post("/api/v1/jobs", json=SPEC, headers=tok["write"])
    Runner(store, poll_s=0.05).run_once()
    client.post("/api/v1/targets", json={"device": "edge", "backend": "onnxruntime", "name": "edge"},
                headers=tok["agent"])
    work = client.get("/api/v1/targets/edge/work", params={"limit": 3}, headers=tok["agent"]).json()["items"]
    assert len(work) == 3
    r = client.get(work[0]["onnx_url"], headers=tok["agent"])
    assert r.status_code == 200 and r.content[:2] == b"\x08\x07" or len(r.content) > 1000
    failed = Measurement(Target("edge", "onnxruntime", name="edge"), work[0]["arch_id"], error="run failed: boom")
    assert client.post("/api/v1/measurements", json=[failed.to_dict()], headers=tok["agent"]).status_code == 201
    again = client.get("/api/v1/targets/edge/work", params={"limit": 20}, headers=tok["agent"]).json()["items"]
    assert work[0]["arch_id"] not in {w["arch_id"] for w in again}


def test_export_errors_name_the_field(env):
    client, store, h = env
    job = client.post("/api/v1/jobs", json=SPEC, headers=h["write"]).json()
    Runner(store, poll_s=0.05).run_once()
    arch_id = client.get(f"{job['url']}/trials", headers=h["read"]).json()["items"][0]["arch_id"]
    base = f"/api/v1/jobs/{job['id']}/architectures"
    r = client.get(f"{base}/{arch_id}/export", headers=h["read"])  # nb201 has no trained weights
    assert r.status_code == 409 and r.json()["field"] == "architecture" and "no stored weights" in r.json()["detail"]
    r = client.get(f"{base}/{arch_id}/export?format=pickle", headers=h["read"])
    assert r.status_code == 422 and r.json()["field"] == "format"
    r = client.get(f"{base}/{'0' * 20}/export", headers=h["read"])
    assert r.status_code == 404 and r.json()["field"] == "arch_id"
    assert client.get(f"/api/v1/jobs/nope/architectures/{arch_id}/export", headers=h["read"]).status_code == 404
    assert client.get(f"/api/v1/architectures/{'0' * 20}/export", headers=h["read"]).status_code == 404


@pytest.mark.parametrize("patch, field", [
    ({"constraints": [{"name": "accuracy", "max": float("inf")}]}, "constraints[0].max"),
    ({"space": {"name": "nb201", "extra": float("nan")}}, "space.extra"),
    ({"budget": {"evaluations": 99999999999999999999999}}, "budget.evaluations"),
    ({"budget": {"evaluations": 2**63 - 1}}, "budget.evaluations"),
    ({"seed": 2**70}, "seed"),
])
def test_numbers_a_database_cannot_hold_are_422_and_nothing_is_stored(env, patch, field):
    import json as _json

    client, store, tok = env
    body = _json.dumps({**SPEC, **patch})  # Infinity / NaN literals, as json.loads accepts them
    r = client.post("/api/v1/jobs", content=body.encode(), headers={**tok["write"], "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert store.count_jobs() == 0 and client.get("/api/v1/jobs").status_code == 200


def test_error_fields_of_404_list_bodies_and_times(env):
    from latency import Measurement, get_target

    client, _, tok = env
    r = client.get("/api/v1/jobs/nope")
    assert r.status_code == 404 and r.json()["field"] == "job_id" and "sqlite" not in r.json()["detail"]
    r = client.post("/api/v1/measurements", json=[1], headers=tok["agent"])
    assert r.status_code == 422 and r.json()["field"] == "body[0]", r.text
    r = client.post("/api/v1/jobs", content=b'{"space": ', headers={**tok["write"], "content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    body = Measurement(get_target("cpu-ort"), "a1", times_ms=(1.0,)).to_dict() | {"times_ms": "12"}
    r = client.post("/api/v1/measurements", json=[body], headers=tok["agent"])
    assert r.status_code == 422 and "times_ms" in r.json()["detail"], r.text


def test_an_architecture_keeps_the_space_config_its_job_searched(env):
    """Snippet, ONNX artefact and agents' work build it under the job's parent (vit-tiny here,
    whose widths differ from the default parent's): no weights are needed for any of them."""
    from nas.engine import _make_trial, prepare_job
    from nas.storage import RoundRecord

    client, store, tok = env
    spec = {"space": {"name": "vit-elastic", "parent": "vit-tiny"}, "objectives": [{"name": "params"}],
            "strategy": {"name": "random"}, "budget": {"evaluations": 2}, "seed": 0}
    job = prepare_job(spec)
    rec = store.create_job(spec, space="vit-elastic", strategy="random", seed=0, budget=2, state="running", owner="t")
    from spaces._suggest import RandomSuggest

    archs = [job.space.sample(RandomSuggest(i)) for i in range(2)]
    trials = [_make_trial(rec.id, i, 0, a, job.problem, {"params": 1.0}, None, 0.0, {}) for i, a in enumerate(archs)]
    store.save_round(rec.id, "t", trials, RoundRecord(rec.id, 0, 2, 2, 2, None, None, 0.0), None)
    a = client.get(f"/api/v1/architectures/{archs[0].arch_id}").json()
    assert a["space_config"] == {"parent": "vit-tiny"} and "get_space('vit-elastic', parent='vit-tiny')" in a["snippet"]
    client.post("/api/v1/targets", json={"device": "edge", "backend": "onnxruntime", "name": "edge"},
                headers=tok["agent"])
    work = client.get("/api/v1/targets/edge/work", params={"limit": 5}, headers=tok["agent"])
    assert work.status_code == 200, work.text
    items = work.json()["items"]
    assert {w["arch_id"] for w in items} == {x.arch_id for x in archs}
    assert all(w["space_config"] == {"parent": "vit-tiny"} for w in items)
    # the same params tried by a later job under another config: ?job= shows each job's own
    spec2 = {**spec, "space": {"name": "vit-elastic", "parent": "vit-tiny", "image_size": 32}}
    rec2 = store.create_job(spec2, space="vit-elastic", strategy="random", seed=0, budget=2, state="running", owner="t")
    t2 = [_make_trial(rec2.id, 0, 0, archs[0], job.problem, {"params": 1.0}, None, 0.0, {})]
    store.save_round(rec2.id, "t", t2, RoundRecord(rec2.id, 0, 1, 1, 1, None, None, 0.0), None)
    mine = client.get(f"/api/v1/architectures/{archs[0].arch_id}", params={"job": rec.id}).json()
    assert mine["space_config"] == {"parent": "vit-tiny"} and mine["trial"]["number"] == 0
    latest = client.get(f"/api/v1/architectures/{archs[0].arch_id}").json()
    assert latest["space_config"] == {"parent": "vit-tiny", "image_size": 32}


def test_a_target_name_finds_one_target_whichever_way_it_is_registered(env):
    from latency import Measurement, Target

    client, _, tok = env
    assert client.post("/api/v1/targets", json={"device": "pixel7", "backend": "onnxruntime", "name": "phone"},
                       headers=tok["agent"]).status_code == 201
    r = client.post("/api/v1/targets", json={"device": "pixel8", "backend": "onnxruntime", "name": "phone"},
                    headers=tok["agent"])
    assert r.status_code == 409 and r.json()["field"] == "name"
    other = Measurement(Target("pixel8", "onnxruntime", name="phone"), "a1", times_ms=(1.0,))
    r = client.post("/api/v1/measurements", json=[other.to_dict()], headers=tok["agent"])
    assert r.status_code == 409 and r.json()["field"] == "name"
    r = client.post("/api/v1/targets", json={"device": "other", "backend": "eager", "name": "cpu-eager"},
                    headers=tok["agent"])
    assert r.status_code == 409  # a built-in target's name
    key = client.get("/api/v1/targets").json()["items"]
    key = next(t["key"] for t in key if t["name"] == "phone")
    assert client.get(f"/api/v1/targets/{key}/work", headers=tok["agent"]).status_code == 200  # keys route too
