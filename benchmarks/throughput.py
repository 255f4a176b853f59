"""Engine throughput: screening, bulk trial persistence, Ray evaluation overhead.

Three measurements, each repeated (median and spread over ``--repeats`` >= 5 runs), each
beside a baseline run on the same machine in the same process (DESIGN §13: ratios, never a
remembered absolute time):

a. Screening (tier 1 of the engine, DESIGN §4): candidates per second of ``space.encode`` +
   the ``rf`` predictor's ``predict_dist`` + the constraint check, on pre-sampled batches;
   sampling (``space.sample(RandomSuggest(rng))``) is timed separately, and "sample +
   screen" is the two together. Baseline: an Optuna ``RandomSampler`` study, ``ask`` +
   ``space.sample(trial)`` per candidate (what a naive per-candidate loop costs).
b. Trials persisted per second: ``Store.save_round`` with batches of 1,000 ``TrialRecord``
   on SQLite (a file in a temporary directory) and PostgreSQL (a temporary database).
   Baseline: Optuna's ``RDBStorage`` on the same backend (its own temporary file/database),
   ``study.add_trials(frozen_trials)``.
c. Ray evaluation overhead per trial: ``RayTuneExecutor(max_concurrent=2)`` against
   ``InlineExecutor`` on the same nb201 batch with the ``TabularEvaluator``; ``ray.init``
   is timed once and reported apart.

Usage::

    python benchmarks/throughput.py            # full run (a few minutes)
    python benchmarks/throughput.py --quick    # smaller batches, a sanity run

Writes ``benchmarks/results/throughput.json`` (``--out``) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# benchmarks/predictors.py shares the package's name: keep this folder off the import path
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUT = HERE / "results" / "throughput.json"
SCREEN_TARGET = 20_000  # candidates/s on two cores (issue)
PERSIST_TARGET = 5_000  # trials/s, bulk (issue)
BATCH = 1_000  # trials per save_round

# the problems screened: two objectives and one constraint per space, as a job would ask
PROBLEMS = {
    "nb201": {"objectives": [{"name": "accuracy", "direction": "maximize"},
                             {"name": "latency_ms", "device": "raspi4", "direction": "minimize"}],
              "constraint": {"name": "latency_ms", "device": "pixel3"}},
    "hwgpt-s": {"objectives": [{"name": "perplexity", "direction": "minimize"},
                               {"name": "latency_ms", "device": "a100", "direction": "minimize"}],
                "constraint": {"name": "memory_mb", "device": "a100"}},
}


# -- statistics ----------------------------------------------------------------------
def summarize(samples: Sequence[float]) -> dict[str, Any]:
    s = sorted(float(x) for x in samples)
    q = np.percentile(s, [25, 75]) if s else [float("nan")] * 2
    med = statistics.median(s) if s else float("nan")
    return {"median": med, "min": s[0] if s else None, "max": s[-1] if s else None, "p25": float(q[0]),
            "p75": float(q[1]), "iqr_over_median": float((q[1] - q[0]) / med) if s and med else None,
            "n": len(s), "samples": s}


def rate(count: int, seconds: Sequence[float]) -> dict[str, Any]:
    return summarize([count / t for t in seconds])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- a. screening --------------------------------------------------------------------
class Screen:
    """The engine's screening step (``PredictorGuidedStrategy._model_based``, before the
    hypervolume pick): encode, ``predict_dist`` on targets scaled to [0, 1], then drop the
    candidates whose predicted constraint metric breaks its bound, with the engine's own
    ``Constraint.violation``."""

    def __init__(self, space, problem, labelled, seed: int) -> None:
        from predictors import get_predictor

        self.space, self.problem = space, problem
        sign = np.array([-1.0 if d == "maximize" else 1.0 for d in problem.directions])
        Y = np.stack([space.metric_array(o.key)[labelled] for o in problem.objectives], axis=1) * sign
        C = np.stack([space.metric_array(c.key)[labelled] for c in problem.constraints], axis=1)
        T = np.hstack([Y, C])
        self.lo, hi = T.min(axis=0), T.max(axis=0)
        self.span = np.where(hi > self.lo, hi - self.lo, 1.0)
        archs = [space.enumerate()[i] for i in labelled]
        self.model = get_predictor("rf", n_estimators=100, random_state=seed)
        self.model.fit(space.encode(archs), (T - self.lo) / self.span)
        self.m = len(problem.objectives)

    def __call__(self, archs: Sequence) -> tuple[np.ndarray, dict[str, float]]:
        t0 = time.perf_counter()
        X = self.space.encode(archs)
        t1 = time.perf_counter()
        mean, std = self.model.predict_dist(X)
        t2 = time.perf_counter()
        ok = np.ones(len(archs), dtype=bool)
        for j, c in enumerate(self.problem.constraints):
            pred = mean[:, self.m + j] * self.span[self.m + j] + self.lo[self.m + j]
            ok &= np.array([c.violation(v) for v in pred]) <= 0
        t3 = time.perf_counter()
        return ok, {"encode": t1 - t0, "predict_dist": t2 - t1, "constraint": t3 - t2}


def bench_screening(name: str, n: int, n_optuna: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    import optuna

    import spaces
    from nas.problem import Problem
    from nas.spec import JobSpec

    space = spaces.get_space(name)
    table = space.enumerate()  # loads the table once, outside every timing
    spec = PROBLEMS[name]
    # the constraint bound: the table's median of that metric, so about half the candidates pass
    ckey = space.resolve_metric(spec["constraint"]["name"], spec["constraint"]["device"])
    col = space.metric_array(ckey)
    bound = float(np.nanmedian(col))
    job = JobSpec.from_dict({"space": {"name": name}, "objectives": spec["objectives"], "budget": {"evaluations": 1},
                             "constraints": [{**spec["constraint"], "max": bound}]})
    problem = Problem.resolve(job, space)
    rng = np.random.default_rng(seed)
    finite = np.flatnonzero(np.all([np.isfinite(space.metric_array(k)) for k in problem.keys], axis=0))
    screen = Screen(space, problem, rng.choice(finite, size=100, replace=False), seed)
    screen([table[0], table[1]])  # warm-up (first predict allocates)

    t_sample, t_screen, parts, passed = [], [], [], []
    for r in range(repeats):
        rng = np.random.default_rng(seed + 1 + r)
        t0 = time.perf_counter()
        archs = [space.sample(spaces.RandomSuggest(rng)) for _ in range(n)]
        t_sample.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ok, part = screen(archs)
        t_screen.append(time.perf_counter() - t0)
        parts.append(part)
        passed.append(float(ok.mean()))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_optuna = []
    for r in range(repeats):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed + r))
        t0 = time.perf_counter()
        for _ in range(n_optuna):
            space.sample(study.ask())
        t_optuna.append(time.perf_counter() - t0)

    sample_screen = rate(n, [a + b for a, b in zip(t_sample, t_screen)])
    optuna_rate = rate(n_optuna, t_optuna)
    return {
        "space": name, "batch": n, "optuna_candidates": n_optuna,
        "problem": problem.describe(),
        "screen_only": rate(n, t_screen),
        "sample_only": rate(n, t_sample),
        "sample_and_screen": sample_screen,
        "screen_seconds_by_part": {k: summarize([p[k] for p in parts]) for k in parts[0]},
        "fraction_passing_constraint": statistics.median(passed),
        "baseline_optuna_ask_sample": optuna_rate,
        "ratio_sample_and_screen_over_optuna": sample_screen["median"] / optuna_rate["median"],
        "ratio_screen_only_over_optuna": rate(n, t_screen)["median"] / optuna_rate["median"],
    }


# -- b. persistence ------------------------------------------------------------------
@contextmanager
def postgres_databases(admin_url: str, count: int) -> Iterator[list[str] | None]:
    """``count`` fresh databases on the server at ``admin_url`` (dropped afterwards), or None."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with admin.connect() as conn:
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    except Exception as e:
        log(f"PostgreSQL at {make_url(admin_url).render_as_string(hide_password=True)} does not answer "
            f"({type(e).__name__}); skipping the PostgreSQL rows")
        yield None
        return
    names = [f"nas_bench_{uuid.uuid4().hex}" for _ in range(count)]
    try:
        with admin.connect() as conn:
            for n in names:
                conn.execute(sa.text(f'CREATE DATABASE "{n}"'))
        postgres_databases.server_version = version
        yield [make_url(admin_url).set(database=n).render_as_string(hide_password=False) for n in names]
    finally:
        with admin.connect() as conn:
            for n in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))
        admin.dispose()


class TrialFactory:
    """Realistic trials of an nb201 job (what ``run_job`` writes with the default strategy):
    architectures drawn from the table (so later batches hit stored architectures), measured
    objectives, a latency constraint, the predictor-guided ``source`` dict."""

    def __init__(self, seed: int = 0) -> None:
        import spaces

        self.space = spaces.get_space("nb201")
        self.table = self.space.enumerate()
        self.arch_dicts: dict[int, dict[str, Any]] = {}
        self.acc = self.space.metric_array("accuracy")
        self.lat = self.space.metric_array("latency_ms@raspi4")
        self.lat2 = self.space.metric_array("latency_ms@pixel3")
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> list[tuple[dict[str, Any], dict[str, float], list[float], dict[str, Any], float]]:
        out = []
        for i in self.rng.integers(len(self.table), size=n):
            i = int(i)
            arch = self.arch_dicts.get(i) or self.arch_dicts.setdefault(i, self.table[i].to_dict())
            metrics = {"accuracy": float(self.acc[i]), "latency_ms@raspi4": float(self.lat[i]),
                       "latency_ms@pixel3": float(self.lat2[i])}
            constraints = [metrics["latency_ms@pixel3"] - 20.0]
            source = {"strategy": "predictor-guided", "pick": "exploit" if i % 2 else "explore", "round": 3,
                      "predictor": "rf", "labels": 40, "screened": 15585,
                      "predicted": {"accuracy": metrics["accuracy"] + 0.5,
                                    "latency_ms@raspi4": metrics["latency_ms@raspi4"] * 1.1}}
            out.append((arch, metrics, constraints, source, float(self.rng.uniform(1e-6, 1e-3))))
        return out


def bench_ours(url: str, n: int, repeats: int, factory: TrialFactory) -> dict[str, Any]:
    from nas.storage import RoundRecord, Store, TrialRecord

    store = Store(url)
    seconds = []
    try:
        for r in range(repeats):
            owner = f"bench:{r}"
            job = store.create_job({"space": {"name": "nb201"}, "bench": True}, space="nb201",
                                   strategy="predictor-guided", seed=r, budget=n, state="running", owner=owner)
            rounds = []
            for b in range(n // BATCH):
                trials = [TrialRecord(job.id, b * BATCH + k, b, arch, "complete",
                                      values={"accuracy": m["accuracy"], "latency_ms@raspi4": m["latency_ms@raspi4"]},
                                      metrics=m, constraints=c, feasible=c[0] <= 0, source=s, duration_s=d)
                          for k, (arch, m, c, s, d) in enumerate(factory.batch(BATCH))]
                rec = RoundRecord(job.id, b, (b + 1) * BATCH, (b + 1) * BATCH, 15585, 0.5 + b / 100,
                                  {"accuracy": 94.0, "latency_ms@raspi4": 8.0}, 0.1,
                                  {"new_evaluations": BATCH, "failed": 0, "unmeasured": 0})
                state = pickle.dumps({"rng": np.random.default_rng(b).bit_generator.state, "round": b})
                rounds.append((trials, rec, state))
            t0 = time.perf_counter()
            for trials, rec, state in rounds:
                store.save_round(job.id, owner, trials, rec, state, hypervolume=rec.hypervolume)
            seconds.append(time.perf_counter() - t0)
            if store.count_trials(job.id) != n:
                raise RuntimeError(f"stored {store.count_trials(job.id)} trials of {n}")
    finally:
        store.dispose()
    return {"trials": n, "batch": BATCH, "seconds": summarize(seconds), "trials_per_s": rate(n, seconds)}


def bench_optuna(url: str, n: int, repeats: int, factory: TrialFactory) -> dict[str, Any]:
    import optuna
    from optuna.distributions import CategoricalDistribution

    from spaces.nb201 import OPS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url)
    dist = CategoricalDistribution(OPS)
    seconds = []
    try:
        for r in range(repeats):
            study = optuna.create_study(storage=storage, directions=["maximize", "minimize"],
                                        study_name=f"bench-{r}-{uuid.uuid4().hex[:6]}")
            frozen = [optuna.trial.create_trial(
                params=dict(arch["params"]), distributions={e: dist for e in arch["params"]},
                values=[m["accuracy"], m["latency_ms@raspi4"]],
                user_attrs={"metrics": m, "source": s, "arch_id": arch["arch_id"], "duration_s": d},
                system_attrs={"constraints": c})
                for arch, m, c, s, d in factory.batch(n)]
            t0 = time.perf_counter()
            study.add_trials(frozen)
            seconds.append(time.perf_counter() - t0)
            if len(study.get_trials(deepcopy=False)) != n:
                raise RuntimeError("optuna stored a different number of trials")
    finally:
        storage.remove_session()
        storage.engine.dispose()
    return {"trials": n, "seconds": summarize(seconds), "trials_per_s": rate(n, seconds)}


def bench_persistence(args: argparse.Namespace, repeats: int) -> list[dict[str, Any]]:
    factory = TrialFactory()
    n, n_opt = (3_000, 200) if args.quick else (10_000, 500)
    out = []
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as tmp:
        out.append(_persist_case("sqlite", f"sqlite:///{tmp}/ours.db", f"sqlite:///{tmp}/optuna.db", n, n_opt,
                                 repeats, factory))
    with postgres_databases(args.pg_url, 2) as dbs:
        if dbs is None:
            out.append({"backend": "postgresql", "skipped": f"no server answers at {args.pg_url}"})
        else:
            case = _persist_case("postgresql", dbs[0], dbs[1], n, n_opt, repeats, factory)
            case["server_version"] = getattr(postgres_databases, "server_version", None)
            out.append(case)
    return out


def _persist_case(backend: str, ours_url: str, optuna_url: str, n: int, n_opt: int, repeats: int,
                  factory: TrialFactory) -> dict[str, Any]:
    log(f"persistence on {backend}: ours {repeats} x {n} trials, optuna {repeats} x {n_opt} trials")
    ours = bench_ours(ours_url, n, repeats, factory)
    theirs = bench_optuna(optuna_url, n_opt, repeats, factory)
    return {"backend": backend, "ours_save_round": ours, "baseline_optuna_add_trials": theirs,
            "ratio_ours_over_optuna": ours["trials_per_s"]["median"] / theirs["trials_per_s"]["median"]}


# -- c. Ray evaluation overhead ------------------------------------------------------
def _constant_evaluator():
    """An evaluator that reads no table: what Ray Tune costs per trial on its own."""
    from nas.evaluation import Evaluator

    class ConstantEvaluator(Evaluator):
        def __call__(self, arch):
            return {"accuracy": 90.0, "latency_ms@raspi4": 10.0}

    return ConstantEvaluator()


def bench_ray(sizes: Sequence[int], repeats: int, seed: int = 0) -> dict[str, Any]:
    import spaces
    from nas.evaluation import InlineExecutor, RayTuneExecutor, TabularEvaluator

    space = spaces.get_space("nb201")
    table = space.enumerate()
    keys = ["accuracy", "latency_ms@raspi4"]
    evaluator = TabularEvaluator(space, keys)
    constant = _constant_evaluator()
    inline = InlineExecutor()
    inline.evaluate(evaluator, table[:2])  # the driver's tables are loaded, as in a running job
    executor = RayTuneExecutor(max_concurrent=2)
    out: dict[str, Any] = {"max_concurrent": 2, "evaluator": "TabularEvaluator(nb201)", "batches": []}
    try:
        t0 = time.perf_counter()
        executor._ensure_ray()  # the executor's own one-off ray.init, timed apart
        out["ray_init_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        executor.evaluate(evaluator, table[:2])  # the first Tune experiment imports Tune's machinery
        out["first_experiment_warmup_s"] = time.perf_counter() - t0
        rng = np.random.default_rng(seed)
        for size in sizes:
            log(f"ray: {repeats} x batch of {size}")
            t_ray, t_inline, t_const, in_trial_ray, in_trial_inline, errors = [], [], [], [], [], 0
            for _ in range(repeats):
                archs = [table[int(i)] for i in rng.choice(len(table), size=size, replace=False)]
                t0 = time.perf_counter()
                res_inline = inline.evaluate(evaluator, archs)
                t_inline.append((time.perf_counter() - t0) / size)
                t0 = time.perf_counter()
                res_ray = executor.evaluate(evaluator, archs)
                t_ray.append((time.perf_counter() - t0) / size)
                errors += sum(r.error is not None for r in res_ray)
                if [r.metrics for r in res_ray] != [r.metrics for r in res_inline]:
                    errors += 1
                in_trial_ray += [r.duration_s for r in res_ray]
                t0 = time.perf_counter()
                res_const = executor.evaluate(constant, archs)
                t_const.append((time.perf_counter() - t0) / size)
                errors += sum(r.error is not None for r in res_const)
                in_trial_inline += [r.duration_s for r in res_inline]
            ray_s, inline_s = summarize(t_ray), summarize(t_inline)
            out["batches"].append({
                "batch": size, "ray_s_per_trial": ray_s, "inline_s_per_trial": inline_s,
                "overhead_s_per_trial": summarize([a - b for a, b in zip(t_ray, t_inline)]),
                # the same batch on Ray with an evaluator that reads no table: Tune's own cost per trial
                "ray_constant_evaluator_s_per_trial": summarize(t_const),
                # time spent inside the evaluator call, as each executor reports it (EvalResult.duration_s)
                "ray_evaluator_s_median": statistics.median(in_trial_ray),
                "inline_evaluator_s_median": statistics.median(in_trial_inline),
                "errors_or_mismatches": errors,
            })
    finally:
        executor.close()
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
    return out


# -- report --------------------------------------------------------------------------
def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        s = f"{x:,.0f}"
    elif abs(x) >= 1:
        s = f"{x:.2f}"
    else:
        s = f"{x:.3g}"
    return s + unit


def _spread(st: dict[str, Any], unit: str = "") -> str:
    return f"{_fmt(st['min'], unit)} – {_fmt(st['max'], unit)}"


def _load(results: dict[str, Any], when: str) -> str:
    la = results["environment"].get(f"loadavg_at_{when}")
    return f"{la[0]:.2f}" if la else "?"


def render(results: dict[str, Any]) -> str:
    lines = [f"Engine throughput ({'quick' if results['config']['quick'] else 'full'} run, "
             f"median of {results['config']['repeats']} repeats, spread = min – max; "
             f"{results['environment']['cpus_available']} CPUs; 1-min load average "
             f"{_load(results, 'start')} at start, {_load(results, 'end')} at end)", ""]
    if "screening" in results:
        lines += ["### a. Screening (encode + rf predict_dist + constraint check), candidates/s", "",
                  "| space | measurement | median | spread | Optuna ask + sample (median) | ratio vs Optuna "
                  f"| target >= {SCREEN_TARGET:,}/s |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for s in results["screening"]:
            base = s["baseline_optuna_ask_sample"]
            for label, key, ratio in (("screen only", "screen_only", s["ratio_screen_only_over_optuna"]),
                                      ("sample + screen", "sample_and_screen", s["ratio_sample_and_screen_over_optuna"]),
                                      ("sample only", "sample_only", None)):
                st = s[key]
                target = ("yes" if st["median"] >= SCREEN_TARGET else "**no**") if key != "sample_only" else ""
                lines.append(f"| {s['space']} | {label} (batch {s['batch']:,}) | {_fmt(st['median'])} | {_spread(st)} "
                             f"| {_fmt(base['median']) if ratio is not None else ''} "
                             f"| {_fmt(ratio) + 'x' if ratio is not None else ''} | {target} |")
        lines.append("")
        parts = "; ".join(f"{s['space']}: " + ", ".join(f"{k} {_fmt(v['median'] * 1e6 / s['batch'])} µs"
                                                         for k, v in s["screen_seconds_by_part"].items())
                          for s in results["screening"])
        lines += [f"Screen time per candidate by part: {parts}.", ""]
    if "persistence" in results:
        lines += ["### b. Trials persisted per second (bulk)", "",
                  "| backend | ours: save_round, 1,000/batch (median) | spread | Optuna RDBStorage add_trials "
                  f"(median) | spread | ours / Optuna | target >= {PERSIST_TARGET:,}/s |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for p in results["persistence"]:
            if "skipped" in p:
                lines.append(f"| {p['backend']} | skipped: {p['skipped']} | | | | | |")
                continue
            o, b = p["ours_save_round"]["trials_per_s"], p["baseline_optuna_add_trials"]["trials_per_s"]
            lines.append(f"| {p['backend']} ({p['ours_save_round']['trials']:,} vs "
                         f"{p['baseline_optuna_add_trials']['trials']:,} trials per repeat) | {_fmt(o['median'])} "
                         f"| {_spread(o)} | {_fmt(b['median'])} | {_spread(b)} | {_fmt(p['ratio_ours_over_optuna'])}x "
                         f"| {'yes' if o['median'] >= PERSIST_TARGET else '**no**'} |")
        lines.append("")
    if "ray" in results:
        r = results["ray"]
        if "error" in r:
            lines += ["### c. Ray evaluation overhead", "", f"failed: {r['error']}", ""]
        else:
            lines += ["### c. Ray evaluation overhead per trial (nb201, TabularEvaluator, max_concurrent=2)", "",
                      "| batch | Ray Tune s/trial (median) | spread | inline s/trial (median) | overhead (ray - inline) "
                      "s/trial | in-evaluator s/trial: ray / inline | Ray, table-free evaluator s/trial | errors |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for b in r["batches"]:
                lines.append(f"| {b['batch']} | {_fmt(b['ray_s_per_trial']['median'])} | {_spread(b['ray_s_per_trial'])} "
                             f"| {_fmt(b['inline_s_per_trial']['median'])} | {_fmt(b['overhead_s_per_trial']['median'])} "
                             f"| {_fmt(b['ray_evaluator_s_median'])} / {_fmt(b['inline_evaluator_s_median'])} "
                             f"| {_fmt(b['ray_constant_evaluator_s_per_trial']['median'])} "
                             f"| {b['errors_or_mismatches']} |")
            lines += ["", f"One-off, excluded above: ray.init {_fmt(r['ray_init_s'])} s; first Tune experiment "
                      f"(2 trials) {_fmt(r['first_experiment_warmup_s'])} s. In-evaluator time on Ray is the "
                      "worker's `EvalResult.duration_s` (each Tune trial unpickles the evaluator; its space comes "
                      "from the worker's registry cache, so tables load once per worker); the table-free column "
                      "is Tune's own per-trial cost.", ""]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    import importlib.metadata as md

    versions = {}
    for pkg in ("numpy", "scikit-learn", "SQLAlchemy", "alembic", "optuna", "ray", "psycopg2-binary"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.node(),
            "cpu_count": os.cpu_count(),
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "versions": versions}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller batches and fewer trials: a sanity run")
    ap.add_argument("--repeats", type=int, default=5, help="repeats per measurement (>= 5; default 5)")
    ap.add_argument("--pg-url", default=os.environ.get("NAS_BENCH_POSTGRES_URL", DEFAULT_PG_URL),
                    help="PostgreSQL server to create (and drop) temporary databases on (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output (default: %(default)s)")
    ap.add_argument("--only", choices=("screening", "persistence", "ray"), action="append",
                    help="run only these parts (repeatable; default: all)")
    args = ap.parse_args(argv)
    if args.repeats < 5:
        ap.error(f"--repeats: got {args.repeats}; a median and spread need at least 5")
    parts = args.only or ["screening", "persistence", "ray"]
    repeats = args.repeats
    results: dict[str, Any] = {
        "benchmark": "throughput", "created": datetime.now(timezone.utc).isoformat(),
        "config": {"quick": args.quick, "repeats": repeats, "parts": parts,
                   "targets": {"screening_candidates_per_s": SCREEN_TARGET, "persisted_trials_per_s": PERSIST_TARGET}},
        "environment": environment(),
    }
    t_all = time.perf_counter()
    if "screening" in parts:
        n, n_opt = (2_000, 300) if args.quick else (10_000, 2_000)
        results["screening"] = []
        for name in ("nb201", "hwgpt-s"):
            log(f"screening {name}: {repeats} x {n} candidates (optuna baseline {repeats} x {n_opt})")
            results["screening"].append(bench_screening(name, n, n_opt, repeats))
    if "persistence" in parts:
        results["persistence"] = bench_persistence(args, repeats)
    if "ray" in parts:
        try:
            results["ray"] = bench_ray((10,) if args.quick else (10, 50), repeats)
        except Exception as e:  # report, keep the other results
            results["ray"] = {"error": f"{type(e).__name__}: {e}"}
    results["total_seconds"] = time.perf_counter() - t_all
    # other processes on the machine skew every rate: keep the evidence beside the numbers
    results["environment"]["loadavg_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(render(results))
    print(f"\nwritten to {args.out} in {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
