"""Export and import of found architectures: ``nas export`` in three formats, artefacts run
where the project is not importable, ``load_architecture`` from a directory, a file, a zip,
an API URL and an id, and every bad input the export issue names."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
import torch

import spaces
from nas import run_job
from nas.cli import main
from nas.storage import Store
from spaces import ExportError, LoadError, load_architecture

SPEC = {"space": {"name": "vit-elastic", "parent": "vit-tiny"},
        "objectives": [{"name": "top1", "direction": "maximize"}, {"name": "params", "direction": "minimize"}],
        "budget": {"evaluations": 4}, "seed": 0, "strategy": {"name": "random"}, "execution": {"backend": "inline"}}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A finished vit-tiny job: (db url, job id, a measured arch id)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('export') / 'nas.db'}"
    store = Store(url)
    result = run_job(SPEC, store)
    trial = store.load_trials(result.job_id)[0]
    return url, result.job_id, trial.arch["arch_id"]


@pytest.fixture(scope="module")
def reference(job):
    """The module the service measured, and an input batch."""
    url, job_id, arch_id = job
    space = spaces.get_space("vit-elastic", parent="vit-tiny")
    arch = spaces.Architecture.from_dict(Store(url).get_architecture(arch_id))
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return space.materialize(arch), x, space.materialize(arch)(x)


def export(job, tmp_path, fmt, *extra):
    url, job_id, arch_id = job
    out = tmp_path / fmt
    assert main(["--db", url, "export", job_id, arch_id, "--format", fmt, "--out", str(out), *extra]) == 0
    return out


def test_safetensors_reloads_with_load_architecture(job, reference, tmp_path):
    _, x, y = reference
    out = export(job, tmp_path, "safetensors")
    assert sorted(p.name for p in out.iterdir()) == ["architecture.json", "model.safetensors"]
    manifest = json.loads((out / "architecture.json").read_text())
    assert manifest["metadata"]["job_id"] == job[1] and "top1" in manifest["metadata"]["metrics"]
    assert manifest["provenance"]["parent"] == "vit-tiny"
    for source in (out, out / "model.safetensors", out / "architecture.json", str(out)):
        model = load_architecture(source)
        assert isinstance(model, torch.nn.Module) and not model.training
        assert model.architecture.arch_id == job[2]
        with torch.no_grad():
            torch.testing.assert_close(model(x), y, rtol=0, atol=1e-5)


# the artefact is run by an interpreter that sees torch and onnxruntime but not this project:
# `-S -I` skips site processing (so the editable install's path hook never loads) and the
# site-packages directory is added back by hand
_HIDDEN = r"""
import importlib.util, sys
sys.path.append(sys.argv[1])
for name in ("spaces", "nas", "predictors", "latency", "api"):
    assert importlib.util.find_spec(name) is None, name + " is importable"
import numpy as np
x = np.load(sys.argv[3])
if sys.argv[2].endswith(".onnx"):
    import onnxruntime
    y = onnxruntime.InferenceSession(sys.argv[2]).run(None, {"input": x})[0]
else:
    import torch
    with torch.no_grad():
        y = torch.jit.load(sys.argv[2])(torch.from_numpy(x)).numpy()
np.save(sys.argv[4], y)
"""


@pytest.mark.parametrize("fmt,file", [("torchscript", "model.pt"), ("onnx", "model.onnx")])
def test_artefact_runs_without_the_project(job, reference, tmp_path, fmt, file):
    import numpy as np

    _, x, y = reference
    site = sysconfig.get_paths()["purelib"]
    if Path(spaces.__file__).resolve().is_relative_to(Path(site).resolve()):
        pytest.skip("the project is installed into site-packages (not editable): it cannot be hidden from there")
    out = export(job, tmp_path, fmt)
    np.save(tmp_path / "x.npy", x.numpy())
    proc = subprocess.run([sys.executable, "-S", "-I", "-c", _HIDDEN, site, str(out / file), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), y.numpy(), rtol=0, atol=1e-5)


def test_existing_directory_is_refused_unless_forced(job, tmp_path, capsys):
    url, job_id, arch_id = job
    out = export(job, tmp_path, "safetensors")
    before = (out / "model.safetensors").stat().st_mtime_ns
    assert main(["--db", url, "export", job_id, arch_id, "--out", str(out)]) == 2
    assert "exists; choose another directory or pass --force" in capsys.readouterr().err
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    time.sleep(0.01)
    export(job, tmp_path, "safetensors", "--force")
    assert (out / "model.safetensors").stat().st_mtime_ns != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["safetensors"]  # no temporary left behind


@pytest.mark.parametrize("args,needle", [
    (["--format", "pickle"], "format: got 'pickle'; valid: safetensors, torchscript, onnx"),
    (["ARCH=nope"], "arch_id: got 'nope'; not an architecture of job"),
    (["JOB=nope"], "job_id: got 'nope' (no such job"),
])
def test_bad_export_input(job, tmp_path, capsys, args, needle):
    url, job_id, arch_id = job
    ids = [job_id, arch_id]
    rest = []
    for a in args:
        if a.startswith("ARCH="):
            ids[1] = a[5:]
        elif a.startswith("JOB="):
            ids[0] = a[4:]
        else:
            rest.append(a)
    out = tmp_path / "out"
    assert main(["--db", url, "export", *ids, "--out", str(out), *rest]) == 2
    assert needle in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_force_replaces_only_an_export(job, tmp_path, capsys, monkeypatch):
    url, job_id, arch_id = job
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert main(["--db", url, "export", job_id, arch_id, "--out", str(precious), "--force"]) == 2
    assert "is not an export (no architecture.json); refusing to replace it" in capsys.readouterr().err
    assert (precious / "notes.txt").read_text() == "keep me"
    # a missing parent is an error that says how to get it, not minutes of training
    other = tmp_path / "empty-cache"
    monkeypatch.setenv("NAS_CACHE_DIR", str(other))  # parents are looked up (and cached) by path
    assert main(["--db", url, "export", job_id, arch_id, "--out", str(tmp_path / "x" / "y")]) == 2
    assert "nas parents train vit-tiny --seed 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (other / "parents" / "vit-tiny-seed0.pt").exists()


def test_weights_never_stored(tmp_path, tiny_spec):
    """nb201 has no trained weights: its architectures cannot be exported."""
    url = f"sqlite:///{tmp_path / 'nb.db'}"
    store = Store(url)
    tiny_spec["budget"]["evaluations"] = 3
    result = run_job(tiny_spec, store)
    arch_id = store.load_trials(result.job_id)[0].arch["arch_id"]
    from nas.export import export_from_job

    with pytest.raises(ExportError, match="nb201 networks have no stored weights.*vit-elastic"):
        export_from_job(store, result.job_id, arch_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parent_changed_since_the_job(job, tmp_path):
    url, job_id, arch_id = job
    store = Store(url)
    original = store.get_job(job_id).provenance
    store.set_provenance(job_id, {**original, "parent_digest": "0" * 16})
    try:
        from nas.export import export_from_job

        with pytest.raises(ExportError, match="the weights it was measured with are not here"):
            export_from_job(store, job_id, arch_id, tmp_path / "out")
    finally:
        store.set_provenance(job_id, original)
    assert not list(tmp_path.iterdir())


def test_load_errors(job, tmp_path, monkeypatch):
    out = export(job, tmp_path, "safetensors")
    monkeypatch.delenv("NAS_API_URL", raising=False)
    with pytest.raises(LoadError, match="not a file, a directory or a URL; to load by id, set NAS_API_URL"):
        load_architecture(tmp_path / "nowhere")
    (out / "model.safetensors").rename(tmp_path / "weights.safetensors")
    with pytest.raises(LoadError, match="has no weights file"):
        load_architecture(out)
    # weights of another architecture: the names or shapes do not match
    from safetensors.torch import load_file, save_file

    w = load_file(str(tmp_path / "weights.safetensors"))
    w["head.weight"] = torch.zeros(10, 3)
    del w["stem.0.weight"]
    save_file(w, str(out / "model.safetensors"))
    with pytest.raises(LoadError, match="not the file the export wrote"):  # the manifest's checksum
        load_architecture(out)
    manifest = json.loads((out / "architecture.json").read_text())
    del manifest["sha256"]  # a hand-made export without a checksum: names and shapes are still checked
    (out / "architecture.json").write_text(json.dumps(manifest))
    with pytest.raises(LoadError, match=r"does not match the network.*missing 1 \(e.g. stem.0.weight\).*wrong shape"):
        load_architecture(out)
    (out / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LoadError, match="not a readable safetensors file"):
        load_architecture(out)
    with pytest.raises(LoadError, match="does not answer"):
        load_architecture(f"http://127.0.0.1:{_closed_port()}/api/v1/architectures/abc")
    with pytest.raises(LoadError, match="has no architecture.json"):
        load_architecture(tmp_path)


def _closed_port() -> int:
    from nas.localcluster import free_port

    return free_port()  # free: nothing listens on it


def _request(url: str, token: str, body: dict | None = None):
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_export_and_load_through_the_api(served, monkeypatch, tmp_path):
    base, token = served
    job = _request(f"{base}/api/v1/jobs", token, SPEC)
    t0 = time.monotonic()
    while (state := _request(f"{base}{job['url']}", token)["state"]) not in ("completed", "failed"):
        assert time.monotonic() - t0 < 180, state
        time.sleep(0.5)
    assert state == "completed"
    trial = _request(f"{base}{job['url']}/trials", token)["items"][0]
    arch_id = trial["arch_id"]
    assert trial["export_url"] == f"/api/v1/jobs/{job['id']}/architectures/{arch_id}/export"
    model = load_architecture(f"{base}/api/v1/jobs/{job['id']}/architectures/{arch_id}", token=token)
    space = spaces.get_space("vit-elastic", parent="vit-tiny")
    x = torch.randn(2, 1, 8, 8)
    # the server trained its own vit-tiny (its own cache); same seed, same weights
    with torch.no_grad():
        torch.testing.assert_close(model(x), space.materialize(model.architecture)(x), rtol=0, atol=1e-5)
    monkeypatch.setenv("NAS_API_URL", base)
    monkeypatch.setenv("NAS_API_TOKEN", token)
    assert load_architecture(arch_id).architecture.arch_id == arch_id
    assert load_architecture(f"{job['id']}/{arch_id}").manifest["metadata"]["job_id"] == job["id"]
    # the zip as a file, and the other formats over HTTP
    req = urllib.request.Request(f"{base}/api/v1/architectures/{arch_id}/export?format=onnx",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["Content-Type"] == "application/zip"
        (tmp_path / "onnx.zip").write_bytes(r.read())
    with pytest.raises(LoadError, match="ONNX artefact: run it with onnxruntime"):
        load_architecture(tmp_path / "onnx.zip")
    with pytest.raises(LoadError, match="answered 422.*format: got 'pickle'"):
        load_architecture(f"{base}/api/v1/architectures/{arch_id}/export?format=pickle")
    with pytest.raises(LoadError, match="answered 404.*no job has measured"):
        load_architecture(f"{base}/api/v1/architectures/{'0' * 20}")
    with pytest.raises(LoadError, match="answered 401"):
        load_architecture(f"{base}/api/v1/architectures/{arch_id}", token="wrong")
