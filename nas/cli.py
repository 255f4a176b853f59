"""``nas``: the command line (search, spaces, proxies, profile, targets, serve, runner, tokens, jobs, show, db)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_USAGE = 2


def _fail(msg: str) -> int:
    print(f"nas: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _space_config(pairs: list[str]) -> dict[str, str] | str:
    """``KEY=VALUE`` arguments as a space config, or the error message for the first bad one."""
    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            return f"config: got {pair!r}; write KEY=VALUE, e.g. dataset=cifar100"
        config[key] = value
    return config


def _store(args: argparse.Namespace):
    from .storage import Store

    return Store(args.db)


# -- search ---------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .engine import check_resume, prepare_job, run_job
    from .errors import EvaluationError, JobConflictError, JobNotFoundError, SpecError, StrategyError
    from .spec import load_spec

    console = Console(stderr=True)
    import signal

    def on_term(signum, frame):  # docker stop / kill: end like Ctrl-C, the job stays resumable
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        spec = load_spec(args.spec)
        if args.backend:
            spec = spec.model_copy(update={"execution": spec.execution.model_copy(update={"backend": args.backend})})
        job = prepare_job(spec)  # everything checked before the database is opened
        store = _store(args)
        if args.resume:
            check_resume(job.spec, store, args.resume)
    except (SpecError, JobNotFoundError) as e:
        return _fail(str(e))

    objectives = [o.key for o in job.problem.objectives]
    with _progress_display(console, spec.budget.evaluations, objectives, quiet=args.quiet) as on_round:
        try:
            result = run_job(spec, store, resume=args.resume, progress=on_round,
                             log=(lambda m: console.print(f"[dim]{m}[/dim]")) if not args.quiet else None)
        except (SpecError, JobNotFoundError, JobConflictError, EvaluationError) as e:
            on_round.close()
            return _fail(str(e))
        except StrategyError as e:  # not the spec's fault: exit 1, with where the work and the traceback are
            on_round.close()
            job_id = getattr(e, "job_id", "JOB_ID")
            print(f"nas: job {job_id} failed: {e}\n  the trials evaluated before it are stored; `nas show {job_id}` "
                  f"has the traceback; `nas search {args.spec} --resume {job_id}` continues", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:
            on_round.close()
            job_id = getattr(e, "job_id", None)
            console.print(f"interrupted; continue with: nas search {args.spec} --resume {job_id}" if job_id
                          else "interrupted before the job was created; nothing was stored")
            return 130

    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result.to_dict(), indent=2))
    _print_result(result, console)
    return 0


class _progress_display:
    """A live bar: evaluations done, best value per objective, hypervolume."""

    def __init__(self, console, total: int, objectives: list[str], quiet: bool) -> None:
        self.console, self.total, self.objectives, self.quiet = console, total, objectives, quiet

    def __enter__(self):
        if self.quiet:
            quiet = lambda p: None  # noqa: E731
            quiet.close = lambda: None
            return quiet
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=self.console, transient=False)
        self.bar.__enter__()
        self.task = self.bar.add_task("search", total=self.total, info="")

        def on_round(p) -> None:
            best = "  ".join(f"{k}={v:.4g}" for k, v in p.best.items())
            hv = f"HV={p.hypervolume:.4f}" if p.hypervolume is not None else "HV=-"
            self.bar.update(self.task, completed=min(p.n_evaluations, self.total), info=f"{hv}  {best}")

        def close() -> None:  # an error ends the run: drop the bar so the error stays one line
            self.bar.update(self.task, visible=False)
            self.bar.stop()
            self.quiet = True
        on_round.close = close
        return on_round

    def __exit__(self, *exc) -> None:
        if not self.quiet:
            self.bar.__exit__(*exc)


def _print_result(result, console) -> None:
    from rich.table import Table

    keys = [o["key"] for o in result.objectives]
    table = Table(title=f"Pareto front of job {result.job_id} ({len(result.pareto)} of {len(result.trials)} trials)")
    table.add_column("trial", justify="right")
    table.add_column("arch_id")
    for k, o in zip(keys, result.objectives):
        table.add_column(f"{k} ({'max' if o['direction'] == 'maximize' else 'min'})", justify="right")
    table.add_column("architecture")
    order = sorted(result.pareto, key=lambda t: t.values[keys[0]])
    for t in order:
        params = json.dumps(t.arch["params"], separators=(",", ":"))
        table.add_row(str(t.number), t.arch_id, *[f"{t.values[k]:.4g}" for k in keys],
                      params if len(params) <= 90 else params[:87] + "...")
    from rich.console import Console

    out = Console()
    if not out.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        out = Console(width=200)
    out.print(table)
    hv = f"{result.hypervolume:.4f}" if result.hypervolume is not None else "-"
    spent = f"{result.n_evaluations}/{result.budget} evaluations"
    if result.n_evaluations < result.budget:
        spent += " (budget not spent: see `nas show` for why)"
    out.print(f"job {result.job_id}: {result.state}, {spent}, hypervolume {hv}")
    if result.state == "failed" and result.error:
        out.print(f"failed: {result.error}", markup=False, highlight=False)
    out.print(f"database: {result.database}")


# -- spaces ---------------------------------------------------------------------
def cmd_spaces(args: argparse.Namespace) -> int:
    from spaces import SpacesError, get_space, list_spaces

    names = [args.name] if args.name else list_spaces()
    try:
        described = [get_space(n).describe() for n in names]
    except SpacesError as e:
        return _fail(f"space.name: {e}" if args.name else str(e))
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for d in described:
        print(f"{d['name']} (version {d['version']})")
        for k, o in d["config_options"].items():
            print(f"  config {k}: {', '.join(map(str, o['values']))} (default {o['default']})")
        for c in d["choices"]:
            print(f"  choice {c['name']}: {', '.join(map(str, c['values']))}")
        for k, m in d["metrics"].items():
            devices = f" on {len(m['devices'])} devices: {', '.join(m['devices'])}" if m["devices"] else ""
            print(f"  metric {k} [{m['unit'] or '-'}, {m['direction']}]{devices}")
    return 0


def cmd_proxies(args: argparse.Namespace) -> int:
    """Compute (once) the zero-cost proxy table of a tabular space: it turns on the
    predictor-guided strategy's zero-cost features and weak-label pretraining (``auto``)."""
    import time

    from predictors.weak_labels import _table_path, proxy_table
    from spaces import SpacesError, TabularSpace, get_space

    if args.jobs is not None and args.jobs < 1:
        return _fail(f"--jobs: got {args.jobs}; valid: an integer >= 1")
    config = _space_config(args.config)
    if isinstance(config, str):
        return _fail(config)
    try:
        space = get_space(args.name, **config)
    except SpacesError as e:
        return _fail(str(e))
    if not isinstance(space, TabularSpace) or args.name == "hwgpt-s":
        return _fail(f"space: {args.name} has no proxy table to compute (proxy tables are for tabular spaces "
                     "with networks, e.g. nb201)")
    path = _table_path(space)[0]
    if path.exists():
        print(f"{space!r}: proxy table ready at {path}")
        return 0
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    t0 = time.perf_counter()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as bar:
        task = bar.add_task(f"{space!r} zero-cost proxies", total=len(space.enumerate()))
        proxy_table(space, n_jobs=args.jobs, progress=lambda done, total: bar.update(task, completed=done))
    print(f"{space!r}: proxy table written to {path} in {time.perf_counter() - t0:.0f} s")
    return 0


def _import_parent(args: argparse.Namespace) -> int:
    from spaces import SpacesError, import_parent

    if not (args.name and args.space and args.source and args.format):
        return _fail("parents import: give NAME --space SPACE --from PATH --format FORMAT, e.g. "
                     "nas parents import deit-digits --space vit-elastic --from vit.pth --format timm --option num_heads=3")
    options: dict[str, Any] = {}
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep:
            return _fail(f"--option: got {item!r}; valid: KEY=VALUE, e.g. num_heads=3")
        options[key] = int(value) if value.lstrip("-").isdigit() else value
    try:
        p = import_parent(args.space, args.name, args.source, format=args.format, overwrite=args.overwrite, **options)
    except SpacesError as e:
        return _fail(str(e))
    print(f"{p.name}: imported into {args.space} from {args.source} ({args.format}): {p.path} digest {p.digest}; "
          f"search it with parent={p.name}")
    return 0


def cmd_parents(args: argparse.Namespace) -> int:
    """Train (once; cached on disk) or list the parents whose weights subnets inherit."""
    import time

    from spaces import SpacesError
    from spaces._parents import checkpoint_path, get_parent, list_parents, load_parent

    if args.action == "import":
        return _import_parent(args)
    if args.action == "list":
        for name in list_parents():
            spec = get_parent(name)
            path = checkpoint_path(name, args.seed)
            state = f"trained ({path})" if path.exists() else "not trained"
            print(f"{name} [space {spec.space}]: {spec.description}; seed {args.seed}: {state}")
        return 0
    if not args.name:
        return _fail(f"parents train: name a parent; valid: {', '.join(list_parents())}")
    if args.seed < 0:
        return _fail(f"--seed: got {args.seed}; valid: an integer >= 0")
    try:
        get_parent(args.name)
        if checkpoint_path(args.name, args.seed).exists() and not args.force:
            p = load_parent(args.name, args.seed, train=False)
            print(f"{p.name} (seed {p.seed}) is trained: {p.path} digest {p.digest} {_fmt_metrics(p.metrics)}"
                  " (--force retrains)")
            return 0
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        t0 = time.perf_counter()
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn()) as bar:
            task = bar.add_task(f"training {args.name} (seed {args.seed})", total=None)

            def progress(done: int, total: int, msg: str) -> None:
                bar.update(task, completed=done, total=total, description=f"training {args.name}: {msg}")

            p = load_parent(args.name, args.seed, progress=progress, force=args.force)
    except SpacesError as e:
        return _fail(str(e))
    print(f"{p.name} (seed {p.seed}) trained in {time.perf_counter() - t0:.0f} s: {p.path} digest {p.digest} "
          f"{_fmt_metrics(p.metrics)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a found architecture with its inherited weights: safetensors, TorchScript, ONNX or a
    Hugging Face directory (llm-subnet)."""
    from spaces import SpacesError

    from .errors import NasError
    from .export import export_from_job

    out = args.out or f"{args.arch_id}-{args.format}"
    try:
        path = export_from_job(_store(args), args.job_id, args.arch_id, out, format=args.format, force=args.force)
    except (SpacesError, NasError) as e:
        return _fail(str(e))
    except OSError as e:  # a read-only directory, a file where a directory should be
        return _fail(f"out: cannot write {out}: {e.strerror or e}")
    from spaces._export import FORMATS

    loader = {"safetensors": "from spaces import load_architecture; model = load_architecture(%r)",
              "torchscript": "import torch; model = torch.jit.load(%r)",
              "onnx": "import onnxruntime; session = onnxruntime.InferenceSession(%r)",
              "hf": "from transformers import AutoModelForCausalLM; model = AutoModelForCausalLM.from_pretrained(%r)",
              }[args.format]
    artefact = str(path) if args.format in ("safetensors", "hf") else str(path / FORMATS[args.format])
    if args.format == "hf" and (path / "modeling_nas_llama.py").is_file():  # layers differ: our modeling file
        loader = loader.replace("(%r)", "(%r, trust_remote_code=True)")
    print(f"exported {args.arch_id} of job {args.job_id} ({args.format}) to {path}\n  {loader % artefact}")
    return 0


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())


# -- latency ----------------------------------------------------------------------
def cmd_profile(args: argparse.Namespace) -> int:
    """Profile networks on this machine (a space's architectures, or an exported file) and store
    the Measurements, as a job or a device agent does."""
    from latency import LatencyError, get_target
    from latency.profilers import get_profiler
    from spaces import Architecture, RandomSuggest, SpacesError, get_space

    try:
        target = get_target(args.target)
        profiler = get_profiler(target.backend, repeats=args.repeats)
    except (LatencyError, ValueError) as e:
        return _fail(str(e))
    if args.sample < 1:
        return _fail(f"--sample: got {args.sample}; valid: an integer >= 1")
    subjects: list[tuple[str, Any, Any]] = []  # (subject id, module or path, inputs)
    if args.file:
        if not Path(args.file).exists():
            return _fail(f"--file: got {args.file!r}; no such file")
        try:
            shape = tuple(int(v) for v in args.shape.split(",")) if args.shape else ()
            if not shape or any(v < 1 for v in shape):
                raise ValueError
        except ValueError:
            return _fail(f"--shape: got {args.shape!r}; valid: the input shape with the batch, e.g. 1,3,32,32")
        import torch

        subjects.append((Path(args.file).name, args.file, (torch.randn(*shape),)))
    else:
        if not args.space:
            return _fail("space: missing; give a space name (e.g. nb201) or --file PATH --shape 1,3,32,32")
        config = _space_config(args.config)
        if isinstance(config, str):
            return _fail(config)
        try:
            space = get_space(args.space, **config)
            if args.arch:
                archs = [space.from_params(json.loads(args.arch))]
            else:
                suggest = RandomSuggest(args.seed)
                archs = [space.sample(suggest) for _ in range(args.sample)]
            for a in archs:
                subjects.append((a.arch_id, space.materialize(a), space.example_inputs(a)))
        except json.JSONDecodeError as e:
            return _fail(f"--arch: got {args.arch!r}; valid: a JSON object of the space's choices ({e})")
        except SpacesError as e:
            return _fail(str(e))
        except NotImplementedError as e:
            return _fail(f"space: {e}")
        del Architecture
    measurements = []
    for sid, subject, inputs in subjects:
        m = profiler.profile(subject, target, inputs, subject_id=sid)
        measurements.append(m)
        if args.json:
            continue
        if m.ok:
            top = sorted(m.kernels, key=lambda k: -(k.time_ms or 0))[:4]
            kern = ", ".join(f"{k.op} x{k.count}" for k in top)
            print(f"{sid}  {target.name}: median {m.median_ms:.4f} ms  p90 {m.p90_ms:.4f}  spread {m.spread:.1%}  "
                  f"({m.repeats} runs, {m.rounds} round{'s' if m.rounds > 1 else ''})  kernels: {kern}")
        else:
            print(f"{sid}  {target.name}: failed: {m.error.splitlines()[0]}")
    if not args.no_store:
        store = _store(args)
        store.add_measurements(measurements)
        print(f"{len(measurements)} measurement(s) stored in {store.display_url()}", file=sys.stderr)
    if args.json:
        print(json.dumps([m.to_dict() for m in measurements], indent=2))
    return 0 if all(m.ok for m in measurements) else 1


def cmd_targets(args: argparse.Namespace) -> int:
    from latency import BUILTIN_TARGETS

    store = _store(args)
    stored = {t.key: t for t in store.list_targets()}
    rows = []
    for t in list(BUILTIN_TARGETS.values()) + [t for k, t in stored.items()
                                               if k not in {b.key for b in BUILTIN_TARGETS.values()}]:
        n = len(store.load_measurements(t, ok_only=True)) if t.key in stored else 0
        rows.append({"name": t.name, "key": t.key, "backend": t.backend, "measurements": n})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']:<14} {r['backend']:<12} {r['measurements']:>6} measurements  {r['key']}")
    return 0


# -- service --------------------------------------------------------------------
def cmd_runner(args: argparse.Namespace) -> int:
    """Claim queued jobs and run them until stopped (Ctrl-C / SIGTERM hand the job back)."""
    import logging
    import signal

    from .runner import Runner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.poll <= 0 or args.stale_after <= 0:
        return _fail(f"--poll and --stale-after: got {args.poll}, {args.stale_after}; valid: seconds > 0")
    node = None
    if args.join_ray:
        if not os.environ.get("RAY_ADDRESS"):
            return _fail("--join-ray: RAY_ADDRESS is not set; valid: the address of a Ray head (host:6379)")
        try:
            node = _join_ray(os.environ["RAY_ADDRESS"])
        except RuntimeError as e:
            return _fail(f"--join-ray: {e}")
    runner = Runner(_store(args), poll_s=args.poll, stale_after_s=args.stale_after)

    def stop(signum, frame):  # finish the round in flight, hand the job back, exit
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        runner.serve_forever()
    except KeyboardInterrupt:
        runner.stop()
    finally:
        if node is not None:  # leave the cluster: `ray start --block` stops its node on SIGTERM
            node.terminate()
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
    return 0


def _join_ray(address: str):
    """Start a Ray node with no CPUs on this host, joined to ``address``, and return its
    ``ray start --block`` process. A Ray driver (the runner's Tune) needs a node on its own
    host; a runner in a container of its own has none until it joins."""
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", f"--address={address}",
                             "--num-cpus=0", "--block"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    t0 = time.monotonic()
    for line in proc.stdout:
        lines.append(line)
        if "Ray runtime started" in line:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc
        if time.monotonic() - t0 > 120:
            break
    proc.kill()
    raise RuntimeError(f"could not join the Ray cluster at {address}: " + "".join(lines[-5:]).strip())


def cmd_agent(args: argparse.Namespace) -> int:
    from latency import LatencyError

    from .agent import Agent, AgentError

    token = args.token or os.environ.get("NAS_API_TOKEN")
    if not token:
        return _fail("--token: missing; a token with the agent scope (`nas tokens create --scopes agent`), "
                     "or NAS_API_TOKEN")
    try:
        agent = Agent(args.api, token, args.target, backend=args.backend, threads=args.threads, batch=args.batch)
        if args.once:
            agent.register()
            print(f"posted {agent.run_once(args.limit)} measurement(s)")
            return 0
        agent.serve_forever(poll_s=args.poll, limit=args.limit)
    except (AgentError, LatencyError) as e:
        return _fail(str(e))
    except KeyboardInterrupt:
        return 0
    return 0


# -- jobs -----------------------------------------------------------------------
def cmd_jobs(args: argparse.Namespace) -> int:
    try:
        jobs = _store(args).list_jobs(state=args.state, limit=args.limit, offset=args.offset)
    except ValueError as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return 0
    for j in jobs:
        hv = f"{j.hypervolume:.4f}" if j.hypervolume is not None else "-"
        print(f"{j.id}  {j.state:<9}  {j.space:<8}  {j.strategy:<16}  {j.n_evaluations:>5}/{j.budget:<5}  HV {hv}  "
              f"{j.created_at:%Y-%m-%d %H:%M}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .engine import _result, prepare_job
    from .errors import JobNotFoundError, SpecError
    from .spec import JobSpec

    store = _store(args)
    try:
        record = store.get_job(args.job_id)
        job = prepare_job(JobSpec.from_dict(record.spec), runnable=False)
    except (JobNotFoundError, SpecError) as e:
        return _fail(str(e))
    result = _result(store, args.job_id, job.problem, job.space)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    from rich.console import Console

    _print_result(result, Console(stderr=True))
    for level, msg in store.logs(args.job_id):
        print(f"[{level}] {msg}")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action == "upgrade":
        store.upgrade()
    print(f"{store.display_url()}: revision {store.current_revision()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nas", description="Neural architecture search service.")
    p.add_argument("--db", default=None, help="database URL (default: $NAS_DATABASE_URL or a SQLite file "
                   "under ~/.local/share/nas)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("search", help="run a search job from a YAML/JSON spec")
    s.add_argument("spec", help="path of the job spec (YAML or JSON)")
    s.add_argument("--resume", metavar="JOB_ID", help="continue an interrupted job")
    s.add_argument("--json-out", metavar="FILE", help="write the trials and the Pareto front as JSON")
    s.add_argument("--backend", choices=["ray", "inline"], help="override execution.backend of the spec")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("spaces", help="list the search spaces, their choices and metrics")
    s.add_argument("name", nargs="?")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_spaces)

    s = sub.add_parser("proxies", help="compute a tabular space's zero-cost proxy table (once; cached)")
    s.add_argument("name", help="space name, e.g. nb201")
    s.add_argument("config", nargs="*", metavar="KEY=VALUE", help="space configuration, e.g. dataset=cifar100")
    s.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    s.set_defaults(func=cmd_proxies)

    s = sub.add_parser("parents", help="train (once; cached), import or list the parents subnets inherit weights from")
    s.add_argument("action", choices=["train", "list", "import"])
    s.add_argument("name", nargs="?", help="parent name, e.g. vit-small")
    s.add_argument("--space", help="import: the space the parent is for (vit-elastic, unet-blocks, llm-subnet)")
    s.add_argument("--from", dest="source", help="import: the checkpoint file or directory")
    s.add_argument("--format", help="import: the checkpoint's format (timm for vit-elastic, diffusers for "
                                    "unet-blocks, hf for llm-subnet)")
    s.add_argument("--option", action="append", metavar="KEY=VALUE", help="import: an importer option, e.g. num_heads=3")
    s.add_argument("--overwrite", action="store_true", help="import: replace an imported parent of the same name")
    s.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    s.add_argument("--force", action="store_true", help="retrain even when a checkpoint exists")
    s.set_defaults(func=cmd_parents)

    s = sub.add_parser("export", help="export a found architecture with its weights (safetensors, TorchScript, ONNX)")
    s.add_argument("job_id")
    s.add_argument("arch_id")
    s.add_argument("--format", default="safetensors", help="safetensors (default), torchscript, onnx, or hf (llm-subnet: a directory transformers loads)")
    s.add_argument("--out", metavar="DIR", help="directory to create (default ARCH_ID-FORMAT)")
    s.add_argument("--force", action="store_true", help="replace DIR when it exists")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("profile", help="profile networks on this machine and store the measurements")
    s.add_argument("space", nargs="?", help="space name, e.g. nb201 (or use --file)")
    s.add_argument("config", nargs="*", metavar="KEY=VALUE", help="space configuration, e.g. dataset=cifar100")
    s.add_argument("--target", default="cpu-ort", help="cpu-eager, cpu-compile or cpu-ort (default)")
    s.add_argument("--arch", help="the architecture as JSON (default: --sample random ones)")
    s.add_argument("--sample", type=int, default=1, help="random architectures to profile (default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--file", help="an exported artefact instead: .onnx (cpu-ort), TorchScript .pt or .pt2 (eager)")
    s.add_argument("--shape", help="input shape of --file, with the batch, e.g. 1,3,32,32")
    s.add_argument("--repeats", type=int, default=30, help="timed runs per round (default 30)")
    s.add_argument("--no-store", action="store_true", help="print only; do not store the measurements")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("targets", help="list latency targets and their stored measurements")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_targets)

    s = sub.add_parser("runner", help="claim queued jobs and run them (several may share PostgreSQL)")
    s.add_argument("--poll", type=float, default=1.0, help="seconds between polls of the queue")
    s.add_argument("--join-ray", action="store_true",
                   help="join the Ray cluster at $RAY_ADDRESS as a node with no CPUs first (a runner on a "
                        "host without a Ray node: containers)")
    s.add_argument("--stale-after", type=float, default=120.0, metavar="S",
                   help="take over a running job whose runner sent no heartbeat for S seconds (default 120)")
    s.set_defaults(func=cmd_runner)

    s = sub.add_parser("agent", help="profile architectures for the API on this device (a device agent)")
    s.add_argument("--api", required=True, help="the API's URL, e.g. http://server:8000")
    s.add_argument("--token", help="a token with the agent scope (or NAS_API_TOKEN)")
    s.add_argument("--target", required=True, help="this device's target name, e.g. pi5-ort")
    s.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "eager", "compile"])
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--limit", type=int, default=4, help="architectures per pull")
    s.add_argument("--poll", type=float, default=5.0, help="seconds between pulls when idle")
    s.add_argument("--once", action="store_true", help="one pull, then exit")
    s.set_defaults(func=cmd_agent)

    s = sub.add_parser("jobs", help="list jobs")
    s.add_argument("--state", choices=["queued", "running", "completed", "failed", "cancelled"])
    s.add_argument("--limit", type=int, default=50)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_jobs)

    s = sub.add_parser("show", help="show a job's Pareto front and log")
    s.add_argument("job_id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("db", help="database migrations")
    s.add_argument("action", choices=["upgrade", "current"])
    s.set_defaults(func=cmd_db)

    # installed packages add commands here (the api package: serve, tokens): the engine's CLI
    # does not import the server (DESIGN §2)
    from importlib.metadata import entry_points

    for ep in entry_points(group="nas.commands"):
        try:
            ep.load()(sub)
        except ImportError:  # the server extra is not installed: its commands are simply absent
            continue
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # Ray workers inherit it
    args = build_parser().parse_args(argv)
    if args.command == "agent":  # an agent needs only latency's runtime: no database, no search extra
        return int(args.func(args) or 0)
    try:
        import optuna, pydantic, sqlalchemy, yaml  # noqa: F401,E401 - the [search] extra
    except ImportError as e:
        return _fail(f"the nas command needs the search extra ({e.name} is missing): pip install 'nas-service[search]'")
    from .errors import StorageError

    try:
        return int(args.func(args) or 0)
    except StorageError as e:
        return _fail(str(e))


if __name__ == "__main__":
    sys.exit(main())
