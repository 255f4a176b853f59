"""End-to-end tests of the ``nas`` console script, run in subprocesses against a SQLite file
under the test's tmp dir (``NAS_DATABASE_URL``): listings, a search with ``--json-out``,
every bad input (exit 2, one ``nas: error:`` line, nothing stored), a ``kill -9`` in the
middle of a job followed by ``--resume``, and one search on the real (local) Ray backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from nas import load_spec, run_job
from nas.storage import Store

pytestmark = pytest.mark.slow

NAS = str(Path(sys.executable).with_name("nas"))
if not Path(NAS).exists():  # pragma: no cover - e.g. a global pytest with the project installed
    import shutil

    NAS = shutil.which("nas") or NAS


def nas_env(db_url: str) -> dict[str, str]:
    env = dict(os.environ, NAS_DATABASE_URL=db_url, COLUMNS="200", PYTHONWARNINGS="ignore")
    env.pop("RAY_ADDRESS", None)  # the Ray test wants a local instance
    return env


def run_nas(db_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NAS, *args], env=nas_env(db_url), capture_output=True, text=True, timeout=timeout)


def jobs(db_url: str) -> list[dict[str, Any]]:
    p = run_nas(db_url, "jobs", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def write_spec(path: Path, spec: dict[str, Any] | str) -> Path:
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return path


def nb201_spec(strategy: str = "random", budget: int = 30, **extra: Any) -> dict[str, Any]:
    spec = {"space": {"name": "nb201", "dataset": "cifar10"},
            "objectives": [{"name": "accuracy", "direction": "maximize"},
                           {"name": "latency_ms", "device": "raspi4", "direction": "minimize"}],
            "constraints": [{"name": "latency_ms", "device": "raspi4", "max": 20.0}],
            "strategy": {"name": strategy}, "budget": {"evaluations": budget}, "seed": 0}
    spec.update(extra)
    return spec


@pytest.fixture
def db(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'nas.db'}"


def one_error_line(p: subprocess.CompletedProcess[str]) -> str:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert lines[0].startswith("nas: error: "), lines[0]
    return lines[0]


# -- nas spaces ---------------------------------------------------------------------
def test_spaces_lists_spaces_and_their_choices(db):
    p = run_nas(db, "spaces")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "nb201 (version 1)" in out and "hwgpt-s (version 1)" in out
    assert "choice 1<-0: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3" in out
    assert "config dataset: cifar10, cifar100, ImageNet16-120 (default cifar10)" in out
    assert "choice embed_dim: 192, 384, 768" in out and "choice n_layer: 10, 11, 12" in out
    assert "raspi4" in out and "cortexA76cpu_tflite21" in out and "a100" in out

    p = run_nas(db, "spaces", "--json")
    assert p.returncode == 0, p.stderr
    described = {d["name"]: d for d in json.loads(p.stdout)}
    assert {"nb201", "hwgpt-s"} <= set(described)
    assert [c["name"] for c in described["nb201"]["choices"]] == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert {c["name"]: c["values"] for c in described["hwgpt-s"]["choices"]}["bias"] == [False, True]

    p = run_nas(db, "spaces", "hwgpt-s")
    assert p.returncode == 0 and "hwgpt-s" in p.stdout and "nb201" not in p.stdout


def test_spaces_unknown_name_exits_2(db):
    p = run_nas(db, "spaces", "nope")
    assert p.returncode == 2
    line = one_error_line(p)
    assert "space.name" in line and "'nope'" in line and "nb201" in line and "hwgpt-s" in line
    assert p.stdout == ""


# -- nas search -----------------------------------------------------------------------
def test_search_prints_front_and_database_and_writes_json(db, tmp_path):
    spec = write_spec(tmp_path / "job.yaml", nb201_spec("predictor-guided", budget=30))
    out = tmp_path / "result.json"
    p = run_nas(db, "search", str(spec), "--backend", "inline", "--json-out", str(out))
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert {"job_id", "trials", "pareto"} <= set(data)
    job_id = data["job_id"]
    assert f"Pareto front of job {job_id}" in p.stdout
    assert f"database: {db}" in p.stdout
    assert f"job {job_id}: completed" in p.stdout
    # the live bar (evaluations done, hypervolume, best values) ends on stderr
    assert "30/30" in p.stderr and "HV=" in p.stderr and "accuracy=" in p.stderr

    assert len(data["trials"]) == 30
    for t in data["trials"] + data["pareto"]:
        assert {"number", "arch", "values", "state"} <= set(t)
        assert set(t["arch"]) >= {"space", "params", "arch_id"}
    assert [t["number"] for t in data["trials"]] == list(range(30))
    assert all(t["state"] == "complete" for t in data["trials"])
    numbers = {t["number"] for t in data["trials"]}
    assert data["pareto"] and all(t["number"] in numbers for t in data["pareto"])
    assert all(t["values"]["latency_ms@raspi4"] <= 20.0 for t in data["pareto"])
    for t in data["pareto"]:  # every front member's row appears in the printed table
        assert t["arch"]["arch_id"] in p.stdout

    (job,) = jobs(db)
    assert job["id"] == job_id and job["state"] == "completed"
    assert job["n_trials"] == 30 and job["n_evaluations"] == 30 and job["budget"] == 30

    p = run_nas(db, "show", job_id, "--json")
    assert p.returncode == 0, p.stderr
    shown = json.loads(p.stdout)
    assert [t["number"] for t in shown["pareto"]] == [t["number"] for t in data["pareto"]]


def test_search_accepts_a_json_spec(db, tmp_path):
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(nb201_spec("tpe", budget=10, execution={"backend": "inline"})))
    p = run_nas(db, "search", str(spec), "--quiet")
    assert p.returncode == 0, p.stderr
    (job,) = jobs(db)
    assert job["state"] == "completed" and job["strategy"] == "tpe"


def _mod(f) -> dict[str, Any]:
    spec = nb201_spec(budget=10)
    f(spec)
    return spec


BAD_INPUTS = {
    # case: (spec file text or dict, or None for no file; extra args; field; given; a piece of "what is valid")
    "unknown space": (_mod(lambda s: s["space"].update(name="nope")), [], "space.name", "nope", "nb201"),
    "unknown dataset": (_mod(lambda s: s["space"].update(dataset="mnist")), [], "space.dataset", "mnist",
                        "cifar100"),
    "unknown objective": (_mod(lambda s: s["objectives"][0].update(name="acc")), [], "objectives[0].name", "acc",
                          "accuracy"),
    "unknown device": (_mod(lambda s: s["objectives"][1].update(device="toaster")), [],
                       "objectives[1].device", "toaster", "raspi4"),
    "unknown strategy": (_mod(lambda s: s["strategy"].update(name="hill-climb")), [], "strategy.name",
                         "hill-climb", "predictor-guided"),
    "unknown strategy parameter": (_mod(lambda s: s["strategy"].update(popsize=4)), [], "strategy.popsize", "4",
                                   "batch_size"),
    "budget 0": (_mod(lambda s: s["budget"].update(evaluations=0)), [], "budget.evaluations", "0",
                 "greater than 0"),
    "budget -5": (_mod(lambda s: s["budget"].update(evaluations=-5)), [], "budget.evaluations", "-5",
                  "greater than 0"),
    "missing objectives": (_mod(lambda s: s.pop("objectives")), [], "objectives", None, "missing"),
    "unknown backend": (_mod(lambda s: s.update(execution={"backend": "slurm"})), [], "execution.backend", "slurm",
                        "inline"),
    "infeasible constraint": (_mod(lambda s: s["constraints"][0].update(max=0.0001)), [], "constraints[0]",
                              "0.0001", "ranges from"),
    "jointly infeasible constraints": (
        _mod(lambda s: s.update(constraints=[{"name": "latency_ms", "device": "raspi4", "max": 5.0},
                                             {"name": "accuracy", "min": 93.0}])),
        [], "constraints", "93.0", "at least one architecture"),
    "malformed YAML": ("space: {name: nb201\nobjectives: [\n", [], "spec", "malformed", "YAML or JSON mapping"),
    "spec is not a mapping": ("- space\n- nb201\n", [], "spec", "list", "a mapping"),
    "missing spec file": (None, [], "spec", "missing.yaml", "file not found"),
    "resume of unknown job": (nb201_spec(budget=10), ["--resume", "0123456789ab"], "job_id", "0123456789ab",
                              "no such job"),
}


# two cases through the installed `nas` in a subprocess (the real entry point, its imports and
# exit status); the rest call the same main() in this process: the subprocess start (about 4 s
# each) is the same every time and told nothing more
_SUBPROCESS_CASES = ("unknown space", "malformed YAML")


def run_nas_here(db_url: str, *args: str, capsys, monkeypatch) -> subprocess.CompletedProcess[str]:
    import warnings

    from nas.cli import main

    monkeypatch.setenv("NAS_DATABASE_URL", db_url)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_stores_nothing(case, db, tmp_path, capsys, monkeypatch):
    spec, extra, field, given, valid = BAD_INPUTS[case]
    path = tmp_path / "missing.yaml" if spec is None else write_spec(tmp_path / "job.yaml", spec)
    args = ("search", str(path), "--backend", "inline", *extra)
    p = run_nas(db, *args) if case in _SUBPROCESS_CASES else run_nas_here(db, *args, capsys=capsys,
                                                                           monkeypatch=monkeypatch)
    assert p.returncode == 2, (p.stdout, p.stderr)
    line = one_error_line(p)
    assert line.startswith(f"nas: error: {field}: "), line
    if given is not None:
        assert given in line
    assert valid in line
    assert p.stdout == ""
    store = Store(db)
    assert store.list_jobs() == []
    store.dispose()


def _interrupted_job(db: str, tmp_path: Path) -> tuple[Path, str]:
    """A small job stopped by an exception after its first round (as a crash would leave it)."""
    spec_path = write_spec(tmp_path / "job.yaml", nb201_spec(budget=20, execution={"backend": "inline"}))

    class Stop(Exception):
        pass

    def stop(p):
        raise Stop

    store = Store(db)
    with pytest.raises(Stop):
        run_job(load_spec(spec_path), store, progress=stop)
    (job,) = store.list_jobs()
    store.dispose()
    return spec_path, job.id


def test_resume_with_a_different_spec_exits_2_and_changes_nothing(db, tmp_path):
    spec_path, job_id = _interrupted_job(db, tmp_path)
    before = jobs(db)
    other = write_spec(tmp_path / "other.yaml", nb201_spec(budget=20, seed=3, execution={"backend": "inline"}))
    p = run_nas(db, "search", str(other), "--resume", job_id, "--quiet")
    assert p.returncode == 2
    line = one_error_line(p)
    assert line.startswith("nas: error: seed: ") and job_id in line
    assert jobs(db) == before

    p = run_nas(db, "search", str(spec_path), "--resume", job_id, "--quiet")  # its own spec finishes it
    assert p.returncode == 0, p.stderr
    (job,) = jobs(db)
    assert job["state"] == "completed" and job["n_evaluations"] == 20


def test_resume_with_a_different_spec_prints_one_line_with_the_bar_on(db, tmp_path):
    _, job_id = _interrupted_job(db, tmp_path)
    other = write_spec(tmp_path / "other.yaml", nb201_spec(budget=20, seed=3, execution={"backend": "inline"}))
    p = run_nas(db, "search", str(other), "--resume", job_id)
    assert p.returncode == 2
    one_error_line(p)


# -- kill -9 in the middle of a job, then --resume ---------------------------------------
def test_kill_9_then_resume_finishes_the_job_exactly(db, tmp_path):
    budget = 200  # 20 rounds: killed after 2, the resume has most of the job to do
    # ridge-rf: this is about kill and resume (the default ranker's resume is tested in
    # test_engine); 200 evaluations of ranker refits would not fit the test's time limits
    spec = nb201_spec("predictor-guided", budget=budget, execution={"backend": "inline"})
    spec["strategy"]["predictor"] = "ridge-rf"
    spec_path = write_spec(tmp_path / "job.yaml", spec)
    store = Store(db)  # migrate first, so the child and this poller never race on the schema
    # the same spec uninterrupted, in its own database, started alongside the job to kill
    reference_json = tmp_path / "reference.json"
    reference = subprocess.Popen([NAS, "search", str(spec_path), "--quiet", "--json-out", str(reference_json)],
                                 env=nas_env(f"sqlite:///{tmp_path / 'reference.db'}"),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = open(tmp_path / "first.log", "w")
    child = subprocess.Popen([NAS, "search", str(spec_path), "--quiet"], env=nas_env(db),
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        job_id = None
        while time.monotonic() < deadline:
            assert child.poll() is None, "the job ended before it could be killed"
            listed = store.list_jobs()
            if listed and len(store.load_rounds(listed[0].id)) >= 2:
                job_id = listed[0].id
                break
            time.sleep(0.05)
        assert job_id, "no two rounds stored within 60 s"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()  # reaped: a zombie would still look alive to the owner check
        log.close()
    assert child.returncode == -signal.SIGKILL

    killed = store.get_job(job_id)
    assert killed.state == "running"  # nobody had the chance to write "failed"
    assert 0 < killed.n_evaluations < budget
    n_killed = store.count_trials(job_id)

    out = tmp_path / "resumed.json"
    p = run_nas(db, "search", str(spec_path), "--resume", job_id, "--json-out", str(out), timeout=170)
    assert p.returncode == 0, p.stderr
    _, ref_err = reference.communicate(timeout=170)
    assert reference.returncode == 0, ref_err

    job = store.get_job(job_id)
    assert job.state == "completed" and job.owner is None
    trials = store.load_trials(job_id)
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials))) and len(set(numbers)) == len(numbers)
    assert len(trials) > n_killed
    assert job.n_evaluations == budget and job.n_trials == len(trials) == budget
    assert store.load_rounds(job_id)[-1].n_evaluations == budget
    assert [r.round for r in store.load_rounds(job_id)] == list(range(job.rounds))
    expected = [t["arch"]["arch_id"] for t in json.loads(reference_json.read_text())["trials"]]
    assert [t.arch_id for t in trials] == expected
    assert any(m.startswith("resuming at round") for _, m in store.logs(job_id))
    data = json.loads(out.read_text())
    assert data["job_id"] == job_id and len(data["trials"]) == budget
    assert f"job {job_id}: completed" in p.stdout
    store.dispose()


# -- the real Ray backend -----------------------------------------------------------------
@pytest.mark.ray
def test_search_on_local_ray(db, tmp_path):
    spec = nb201_spec("predictor-guided", budget=20)  # no execution key: the default backend, ray
    spec["strategy"]["batch_size"] = 10
    path = write_spec(tmp_path / "job.yaml", spec)
    p = run_nas(db, "search", str(path), "--quiet", timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    (job,) = jobs(db)
    assert job["state"] == "completed" and job["spec"].get("execution", {}).get("backend", "ray") == "ray"
    assert job["n_trials"] == 20 and job["n_evaluations"] == 20
    store = Store(db)
    trials = store.load_trials(job["id"])
    store.dispose()
    assert [t.number for t in trials] == list(range(20))
    assert all(t.state == "complete" and t.duration_s is not None for t in trials)


@pytest.mark.ray
def test_ctrl_c_on_ray_cancels_and_resume_finishes_exactly(db, tmp_path):
    """SIGINT during a Ray Tune batch: exit 130, job cancelled, no batch stored as failed;
    --resume (inline) then gives the trials of an uninterrupted run."""
    budget = 60
    # ridge-rf: the signal must land inside a Tune batch, which is nearly all of such a run;
    # with the ranker, a third of the time goes to refits between batches
    ray, inline = nb201_spec("predictor-guided", budget=budget), nb201_spec(
        "predictor-guided", budget=budget, execution={"backend": "inline"})
    ray["strategy"]["predictor"] = inline["strategy"]["predictor"] = "ridge-rf"
    ray_spec = write_spec(tmp_path / "ray.yaml", ray)
    inline_spec = write_spec(tmp_path / "inline.yaml", inline)
    store = Store(db)
    child = subprocess.Popen([NAS, "search", str(ray_spec), "--quiet"], env=nas_env(db),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and child.poll() is None:
            listed = store.list_jobs()
            if listed and store.load_rounds(listed[0].id):
                break
            time.sleep(0.1)
        assert child.poll() is None, "the job ended before it could be interrupted"
        time.sleep(1.0)  # into the next Tune batch
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    (job,) = store.list_jobs()
    assert job.state == "cancelled"
    assert all(t.state == "complete" for t in store.load_trials(job.id))

    # execution may differ on resume: where evaluations run does not change the job
    p = run_nas(db, "search", str(inline_spec), "--resume", job.id, "--quiet", timeout=120)
    assert p.returncode == 0, p.stderr
    reference = tmp_path / "reference.json"
    p = run_nas(f"sqlite:///{tmp_path / 'ref.db'}", "search", str(inline_spec), "--quiet", "--json-out",
                str(reference), timeout=120)
    assert p.returncode == 0, p.stderr
    expected = [t["arch"]["arch_id"] for t in json.loads(reference.read_text())["trials"]]
    assert [t.arch_id for t in store.load_trials(job.id)] == expected


@pytest.mark.parametrize("args, needle", [
    (["proxies", "nb201", "dataset=cifar1000"], "space.dataset: got 'cifar1000'; valid: cifar10, cifar100"),
    (["proxies", "nb201", "cifar10"], "config: got 'cifar10'; write KEY=VALUE"),
    (["proxies", "hwgpt-s"], "hwgpt-s has no proxy table to compute"),
    (["proxies", "nb999"], "nb999"),
    (["proxies", "nb201", "--jobs", "0"], "--jobs: got 0; valid: an integer >= 1"),
])
def test_proxies_bad_input(tmp_path, args, needle, capsys, monkeypatch):
    db = f"sqlite:///{tmp_path}/nas.db"
    # the first through the installed `nas`, the rest in this process (see run_nas_here)
    out = run_nas(db, *args) if args[-1] == "dataset=cifar1000" else run_nas_here(db, *args, capsys=capsys,
                                                                                 monkeypatch=monkeypatch)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr


def test_a_fault_in_the_strategy_says_where_the_work_is_and_exits_1(db, tmp_path, monkeypatch, capsys):
    """In process (the fault is patched in): not the spec's fault, so not exit 2; the trials stay."""
    import yaml

    from nas.cli import main
    from nas.storage import Store
    from nas.strategies import NSGA2Strategy

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"},
                                    {"name": "latency_ms", "device": "raspi4"}],
                                    "strategy": {"name": "nsga2"}, "budget": {"evaluations": 20}, "seed": 0}))

    def broken(self):
        raise TypeError("cannot pickle '_thread.lock' object")

    monkeypatch.setattr(NSGA2Strategy, "get_state", broken)
    assert main(["--db", db, "search", str(spec), "--backend", "inline", "--quiet"]) == 1
    err = capsys.readouterr().err
    (job,) = Store(db).list_jobs()
    assert f"nas: job {job.id} failed: internal error in strategy nsga2 (get_state): TypeError" in err
    assert f"nas show {job.id}" in err and f"--resume {job.id}" in err
    assert Store(db).count_trials(job.id) == 10
    assert main(["--db", db, "show", job.id]) == 0
    out = capsys.readouterr().out
    assert "failed: internal error in strategy nsga2" in out and "Traceback" in out
