"""Profilers: measure a network on this machine's CPU, one ``Profiler`` per backend.

``get_profiler(backend, **protocol)`` returns one of ``eager``, ``compile`` (inductor) and
``onnxruntime`` (every graph optimisation on). ``profile(subject, target, inputs)`` takes a
``torch.nn.Module`` or an exported artefact (``.onnx`` for ONNX Runtime; TorchScript ``.pt``
or ``torch.export`` ``.pt2`` for eager) and returns a :class:`Measurement`.

The protocol is built for a shared, noisy machine: the Target's thread count is fixed for
the run (and restored after), ``warmup`` untimed iterations, rounds of at least ``repeats``
iterations and ``min_round_s`` seconds, and a spread check: rounds are measured until two of
them agree (medians within ``max_spread / 2``) and the fastest is tight (``(p90 - p10) /
median`` within ``max_spread``), up to ``max_rounds``; the fastest round is kept. A network that fails to export, compile or run gives a Measurement
with ``error`` set, so the job that asked records it and goes on.
"""

from __future__ import annotations

import abc
import copy
import contextlib
import datetime as _dt
import functools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ._errors import BackendNotInstalledError, InvalidTargetError, ProfilingError, UnknownBackendError
from ._measurement import Kernel, Measurement
from ._target import Target

__all__ = ["Profiler", "EagerProfiler", "CompileProfiler", "OnnxRuntimeProfiler", "get_profiler",
           "list_profilers", "machine_id", "export_onnx"]


@functools.cache
def machine_id() -> str:
    """A stable id of this machine: ``/etc/machine-id`` when readable, else the host name, plus the CPU model."""
    mid = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        with contextlib.suppress(OSError):
            mid = Path(path).read_text().strip()[:12]
            break
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{mid or platform.node()}:{cpu}"


def _versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    import numpy

    out = {"python": platform.python_version(), "numpy": numpy.__version__,
           "os": f"{platform.system()} {platform.release()}"}
    with contextlib.suppress(ImportError):  # a device agent may run ONNX Runtime without torch
        import torch

        out["torch"] = torch.__version__
    out.update(extra or {})
    return out


@contextlib.contextmanager
def _torch_threads(n: int | None):
    try:
        import torch
    except ImportError:  # ONNX Runtime alone: its session sets its own threads
        yield n
        return
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


_WARM: list[bool] = []


def _warm_up_cpu(seconds: float = 0.3) -> None:
    """Once per process: busy work before the first timing, so the core has left its idle
    frequency (the first measurement of a fresh process was up to 40 % slow without it)."""
    if _WARM:
        return
    t0 = time.perf_counter()
    x = 0
    while time.perf_counter() - t0 < seconds:
        x += sum(range(1000))
    _WARM.append(True)


def _error_text(e: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(e), e)).strip()[:2000]


class Profiler(abc.ABC):
    """Measures one network on one Target and returns a :class:`Measurement`.

    Contract: ``profile`` never raises for a network that fails (the Measurement carries the
    error); it raises ``InvalidTargetError`` when the Target is for another backend or lacks
    an input shape, and the constructor raises ``BackendNotInstalledError`` (with the pip
    command) when the runtime is missing. Subclasses implement ``_prepare``: turn the subject
    into a zero-argument callable that runs one forward, plus the kernels that really run.
    """

    backend: ClassVar[str]
    # True where ``Measurement.kernels`` are the nodes of the optimised graph the backend runs
    # (whatever ``kernel_iters``), so their count says what it fused; the torch profiler's
    # top-level events do not (a compiled region is one event, whatever it holds)
    states_graph: ClassVar[bool] = False

    def __init__(self, warmup: int = 10, repeats: int = 30, min_round_s: float = 0.05, max_spread: float = 0.1,
                 max_rounds: int = 5, kernel_iters: int = 5) -> None:
        for name, value, lo in (("warmup", warmup, 0), ("repeats", repeats, 1), ("max_rounds", max_rounds, 1),
                                ("kernel_iters", kernel_iters, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name}: got {value!r}; valid: an integer >= {lo}")
        for name, value in (("min_round_s", min_round_s), ("max_spread", max_spread)):
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name}: got {value!r}; valid: a number >= 0")
        self.warmup, self.repeats, self.min_round_s = warmup, repeats, float(min_round_s)
        self.max_spread, self.max_rounds, self.kernel_iters = float(max_spread), max_rounds, kernel_iters
        self._check_installed()

    def _check_installed(self) -> None:  # noqa: B027 - optional hook
        """Raise ``BackendNotInstalledError`` when the runtime is missing."""

    # -- the protocol ------------------------------------------------------------------
    def profile(self, subject: Any, target: Target, inputs: Sequence[Any] | None = None, *,
                subject_id: str | None = None) -> Measurement:
        if target.backend != self.backend:
            raise InvalidTargetError("target.backend", target.backend,
                                     f"{self.backend} (this is the {self.backend} profiler)")
        inputs = self._inputs(target, inputs)
        sid = subject_id or (str(subject) if isinstance(subject, (str, Path)) else type(subject).__name__)
        stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        base = dict(target=target, subject=sid, warmup=self.warmup, machine=machine_id(), timestamp=stamp)
        with _torch_threads(target.threads) as threads:
            try:
                run, kernels, extra = self._prepare(subject, inputs, target)
            except Exception as e:  # export / compile failures are recorded, not raised
                return Measurement(**base, error=f"prepare failed: {_error_text(e)}", versions=_versions(),
                                   threads={"intra_op": threads})
            try:
                rounds = self._measure(run)
            except Exception as e:
                return Measurement(**base, error=f"run failed: {_error_text(e)}", versions=_versions(extra),
                                   threads={"intra_op": threads}, kernels=kernels)
        import numpy as np

        def spread(ts: list[float]) -> float:
            med = float(np.median(ts))
            return float(np.quantile(ts, 0.9) - np.quantile(ts, 0.1)) / med if med > 0 else 0.0

        medians = [float(np.median(r)) for r in rounds]
        best = rounds[int(np.argmin(medians))]  # interference only adds time: the fastest round
        agree = len(rounds) < 2 or (sorted(medians)[1] - min(medians)) / max(min(medians), 1e-12) <= self.max_spread / 2
        info = {"clock": "time.perf_counter_ns", "max_spread": self.max_spread, "min_round_s": self.min_round_s,
                "round_medians_ms": medians, "round_spreads": [spread(r) for r in rounds],
                "spread_ok": spread(best) <= self.max_spread and agree}
        return Measurement(**base, times_ms=tuple(best), repeats=len(best), rounds=len(rounds),
                           threads=self._threads(threads), versions=_versions(extra), kernels=kernels,
                           info=info)

    def _threads(self, intra: int | None) -> dict[str, int]:
        """The thread settings that were in force (only what this profiler actually set or read)."""
        return {"intra_op": intra} if intra is not None else {}

    @staticmethod
    def _inputs(target: Target, inputs: Sequence[Any] | None) -> tuple[Any, ...]:
        if inputs is not None:
            return tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        if not target.shape:
            raise InvalidTargetError("target.shape", [], "the input shape without the batch (e.g. [3, 32, 32]), "
                                     "or pass inputs=")
        import torch

        return (torch.randn(target.batch, *target.shape, generator=torch.Generator().manual_seed(0)),)

    def _measure(self, run: Callable[[], Any]) -> list[list[float]]:
        """Rounds of timings until two rounds agree (their medians within ``max_spread / 2``) and
        the best one is tight (spread within ``max_spread``), or ``max_rounds`` were run.

        On a shared machine a neighbour's burst slows a whole round; one round cannot tell
        that it was hit, two that agree can. Interference only ever adds time, so the round
        kept is the fastest one (see ``profile``)."""
        import numpy as np

        _warm_up_cpu()
        for _ in range(self.warmup):
            run()
        rounds: list[list[float]] = []
        medians: list[float] = []
        for _ in range(self.max_rounds):
            times: list[float] = []
            t_round = time.perf_counter()
            while len(times) < self.repeats or time.perf_counter() - t_round < self.min_round_s:
                t0 = time.perf_counter_ns()
                run()
                times.append((time.perf_counter_ns() - t0) / 1e6)
                if len(times) >= 20 * self.repeats:  # a very fast network: enough samples
                    break
            rounds.append(times)
            medians.append(float(np.median(times)))
            if self.max_rounds == 1:
                break
            if len(rounds) >= 2:
                a, b = sorted(medians)[:2]
                best = rounds[int(np.argmin(medians))]
                tight = (np.quantile(best, 0.9) - np.quantile(best, 0.1)) / max(a, 1e-12) <= self.max_spread
                if (b - a) / max(a, 1e-12) <= self.max_spread / 2 and tight:
                    break
        return rounds

    @abc.abstractmethod
    def _prepare(self, subject: Any, inputs: tuple[Any, ...], target: Target
                 ) -> tuple[Callable[[], Any], tuple[Kernel, ...], dict[str, str]]:
        """``(run, kernels, extra versions)``; raising here records a failed measurement."""


def _torch_kernels(fn: Callable[[], Any], iters: int) -> tuple[Kernel, ...]:
    """The top-level ops the torch profiler sees in ``iters`` forwards, per forward."""
    if iters <= 0:
        return ()
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            fn()
    counts: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for e in prof.events():
        if e.cpu_parent is None and not e.name.startswith(("ProfilerStep", "[")):
            counts[e.name] += 1
            totals[e.name] += e.cpu_time_total / 1e3
    return tuple(Kernel(op, max(1, round(n / iters)), totals[op] / iters) for op, n in sorted(counts.items()))


class EagerProfiler(Profiler):
    """PyTorch eager mode under ``torch.inference_mode``; also loads TorchScript / ``torch.export`` files."""

    backend = "eager"

    def _prepare(self, subject, inputs, target):
        import torch

        module = _load_torch_artefact(subject) if isinstance(subject, (str, Path)) else subject
        if hasattr(module, "eval"):
            module.eval()

        def run():
            with torch.inference_mode():
                return module(*inputs)

        run()  # fail here (recorded as a prepare failure) rather than in the timing loop
        return run, _torch_kernels(run, self.kernel_iters), {}


def _load_torch_artefact(path: str | Path):
    import torch

    path = Path(path)
    if not path.exists():
        raise ProfilingError(f"subject: no such file {str(path)!r}")
    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module()
    return torch.jit.load(str(path), map_location="cpu")


class CompileProfiler(Profiler):
    """``torch.compile`` with inductor (default mode); compilation happens in ``_prepare``, untimed."""

    backend = "compile"

    def __init__(self, *args: Any, mode: str | None = None, **kwargs: Any) -> None:
        self.mode = mode
        super().__init__(*args, **kwargs)

    def _check_installed(self) -> None:
        try:
            import torch._inductor  # noqa: F401
        except ImportError as e:  # pragma: no cover - torch always ships inductor
            raise BackendNotInstalledError("compile", "torch.compile needs torch >= 2.0 with inductor") from e

    def _prepare(self, subject, inputs, target):
        import torch

        module = _load_torch_artefact(subject) if isinstance(subject, (str, Path)) else subject
        module.eval()
        compiled = torch.compile(module, mode=self.mode, dynamic=False)

        def run():
            with torch.inference_mode():
                return compiled(*inputs)

        run()  # compiles
        return run, _torch_kernels(run, self.kernel_iters), {"compile_mode": self.mode or "default"}


def export_onnx(module: Any, inputs: Sequence[Any], path: str | Path, opset: int = 17) -> Path:
    """Export with the TorchScript-based exporter (fast: ~0.2 s for an NB201 net, vs ~4 s for dynamo),
    falling back to the ``torch.export``-based one when the legacy exporter is gone or fails."""
    import torch

    path = Path(path)
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, tuple(inputs), str(path), dynamo=False, opset_version=opset)
        except (TypeError, AttributeError, ImportError, NotImplementedError):  # the legacy exporter is gone
            with contextlib.redirect_stdout(sys.stderr):
                torch.onnx.export(module, tuple(inputs), str(path), dynamo=True)
    return path


def _float32(module: Any, inputs: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """``module`` and ``inputs`` in float32 where they hold half or bfloat16 tensors (a copy of
    the module; the caller's stays as it is): ONNX Runtime's CPU provider has no bf16 kernels
    for most ops, so a bf16 network is timed as the float32 network ORT would run."""
    import torch

    low = (torch.bfloat16, torch.float16)
    tensors = list(module.parameters()) + list(module.buffers()) if isinstance(module, torch.nn.Module) else []
    if any(t.dtype in low for t in tensors):
        module = copy.deepcopy(module).float()
    inputs = tuple(x.float() if isinstance(x, torch.Tensor) and x.dtype in low else x for x in inputs)
    return module, inputs


class OnnxRuntimeProfiler(Profiler):
    """ONNX Runtime, CPU provider, every graph optimisation on (``ORT_ENABLE_ALL``).

    A module is first exported to ONNX (in float32 where it holds bf16/fp16 weights: a copy,
    as ORT's CPU kernels are float32); the kernels are the nodes of the graph ORT really
    runs (its optimised graph: ``FusedConv``, ``FusedMatMul``, ``SkipLayerNormalization``,
    NCHWc convs, ...), with per-node times from ORT's own profiler over ``kernel_iters`` runs.
    """

    backend = "onnxruntime"
    states_graph = True

    def _threads(self, intra: int | None) -> dict[str, int]:
        return {"intra_op": intra or 0, "inter_op": 1}  # both set on the session (0: ORT's default)

    def _check_installed(self) -> None:
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise BackendNotInstalledError("onnxruntime", "pip install 'nas-service[latency]' "
                                           "(or: pip install onnxruntime onnx onnxscript)") from e

    def _session(self, model_path: Path, target: Target, *, optimized: Path | None = None,
                 profile_prefix: str | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = target.threads or 0
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3  # the NCHWc "hardware specific" notice is expected: we profile on this machine
        if optimized is not None:
            so.optimized_model_filepath = str(optimized)
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        return ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])

    def _prepare(self, subject, inputs, target):
        import numpy as np
        import onnx
        import onnxruntime as ort

        tmp = tempfile.TemporaryDirectory(prefix="nas-ort-")
        try:
            work = Path(tmp.name)
            if isinstance(subject, (str, Path)):
                model_path = Path(subject)
                if not model_path.exists():
                    raise ProfilingError(f"subject: no such file {str(model_path)!r}")
            else:
                subject, inputs = _float32(subject, inputs)
                model_path = export_onnx(subject, inputs, work / "model.onnx")
            optimized = work / "optimized.onnx"
            sess = self._session(model_path, target, optimized=optimized)
            feeds = {i.name: (x.detach().numpy() if hasattr(x, "detach") else np.asarray(x))
                     for i, x in zip(sess.get_inputs(), inputs)}
            kernels = self._kernels(onnx.load(str(optimized)), model_path, target, feeds, work)
        finally:
            tmp.cleanup()

        def run():
            return sess.run(None, feeds)

        run()
        return run, kernels, {"onnxruntime": ort.__version__, "onnx": onnx.__version__,
                              "graph_optimization": "ORT_ENABLE_ALL"}

    def _kernels(self, graph, model_path: Path, target: Target, feeds: dict, work: Path) -> tuple[Kernel, ...]:
        def op_name(domain: str, op: str) -> str:
            return op if domain in ("", "ai.onnx") else f"{domain.removeprefix('com.microsoft.')}.{op}"

        counts = Counter(op_name(n.domain, n.op_type) for n in graph.graph.node)
        times: Counter[str] = Counter()
        if self.kernel_iters > 0:
            sess = self._session(model_path, target, profile_prefix=str(work / "prof"))
            for _ in range(self.kernel_iters):
                sess.run(None, feeds)
            events = json.loads(Path(sess.end_profiling()).read_text())
            # "<node>_kernel_time" events carry the op that ran; the optimised graph gives its domain
            domain = {n.op_type: n.domain for n in graph.graph.node}
            for ev in events:
                if ev.get("cat") == "Node" and ev.get("name", "").endswith("_kernel_time"):
                    op = ev.get("args", {}).get("op_name", "?")
                    times[op_name(domain.get(op, ""), op)] += ev.get("dur", 0) / 1e3 / self.kernel_iters
        return tuple(Kernel(op, n, times.get(op)) for op, n in sorted(counts.items()))


_PROFILERS: dict[str, type[Profiler]] = {"eager": EagerProfiler, "compile": CompileProfiler,
                                         "onnxruntime": OnnxRuntimeProfiler}


def list_profilers() -> list[str]:
    return sorted(_PROFILERS)


def get_profiler(backend: str, **protocol: Any) -> Profiler:
    """The profiler of ``backend``; raises ``UnknownBackendError`` or ``BackendNotInstalledError``."""
    if backend not in _PROFILERS:
        raise UnknownBackendError(backend, list_profilers())
    return _PROFILERS[backend](**protocol)


os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # a 2-core box: no compile worker pool
