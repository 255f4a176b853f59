"""Tests of ``latency``: value types, the profilers on this CPU, traced graphs, fusion rules
learned by timing, the kernel-sum model, storage of measurements, and profiled objectives in jobs."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from latency import (BUILTIN_TARGETS, BackendNotInstalledError, InvalidMeasurementError, InvalidTargetError,
                     Kernel, Measurement, Target, UnknownBackendError, UnknownLatencyModelError, get_latency_model,
                     get_target)
from latency.fusion import FusionRules, kernels, learn_rules
from latency.graph import build_ops, trace
from latency.profilers import export_onnx, get_profiler
from spaces import PROFILED_DEVICES, RandomSuggest, get_space

FAST = dict(warmup=2, repeats=10, min_round_s=0.0, kernel_iters=2)


class Small(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean((2, 3)))


def small_inputs():
    return (torch.randn(1, 3, 16, 16),)


# -- value types -------------------------------------------------------------------------
def test_target_round_trips_and_names_bad_fields():
    t = Target("cpu", "onnxruntime", threads=1, batch=2, shape=(3, 32, 32))
    assert Target.from_json(t.to_json()) == t
    assert t.name == "cpu-onnxruntime" and t.key == "cpu/onnxruntime/t1/b2/3x32x32"
    with pytest.raises(UnknownBackendError, match=r"target.backend: got 'tensorrt'; valid: eager, compile"):
        Target("cpu", "tensorrt")
    for kwargs, field in (({"threads": 0}, "target.threads"), ({"batch": 0}, "target.batch"),
                          ({"shape": (3, -1)}, "target.shape"), ({"device": ""}, "target.device")):
        with pytest.raises(InvalidTargetError, match=field):
            Target(**{"device": "cpu", "backend": "eager", **kwargs})
    with pytest.raises(InvalidTargetError, match="target.colour"):
        Target.from_dict({"device": "cpu", "colour": "red"})
    assert set(BUILTIN_TARGETS) == set(PROFILED_DEVICES)  # the names spaces offer are the ones we profile
    with pytest.raises(InvalidTargetError, match="cpu-eager, cpu-compile, cpu-ort"):
        get_target("gpu-trt")


def test_measurement_derives_statistics_and_round_trips():
    m = Measurement(get_target("cpu-eager"), "arch1", times_ms=(1.0, 2.0, 3.0, 4.0, 100.0), warmup=3, repeats=5,
                    kernels=(Kernel("aten::conv2d", 2, 0.5),), versions={"torch": torch.__version__})
    assert m.median_ms == 3.0 and m.p90_ms == pytest.approx(61.6)
    back = Measurement.from_json(m.to_json())
    assert back == m
    d = json.loads(m.to_json())
    d["median_ms"] = 999.0  # derived values are recomputed from the raw timings, never trusted
    assert Measurement.from_dict(d).median_ms == 3.0
    failed = Measurement(get_target("cpu-ort"), "arch2", error="prepare failed: export error")
    assert not failed.ok and math.isnan(failed.median_ms)
    assert Measurement.from_json(failed.to_json()).error == failed.error


@pytest.mark.parametrize("times, reason", [((1.0, -0.5), "negative time -0.5"), ((1.0, float("nan")), "non-finite"),
                                           ((float("inf"),), "non-finite"), ((), "empty")])
def test_measurement_rejects_impossible_times_with_the_reason(times, reason):
    with pytest.raises(InvalidMeasurementError, match=reason):
        Measurement(get_target("cpu-eager"), "x", times_ms=times)
    with pytest.raises(InvalidMeasurementError, match="times_ms"):
        Measurement.from_dict({"target": get_target("cpu-eager").to_dict(), "subject": "x", "times_ms": list(times)})


def test_measurement_rejects_unknown_fields_and_bad_counts():
    with pytest.raises(InvalidMeasurementError, match="colour: not a measurement field"):
        Measurement.from_dict({"target": {"device": "cpu"}, "subject": "x", "times_ms": [1], "colour": 1})
    with pytest.raises(InvalidMeasurementError, match="warmup: got -1"):
        Measurement(get_target("cpu-eager"), "x", times_ms=(1.0,), warmup=-1)


# -- profilers ---------------------------------------------------------------------------
@pytest.mark.timing
@pytest.mark.parametrize("backend, kernel", [("eager", "aten::conv2d"), ("onnxruntime", "Conv")])
def test_profilers_measure_this_cpu_with_provenance(backend, kernel):
    target = Target("cpu", backend, threads=1)
    m = get_profiler(backend, **FAST).profile(Small(), target, small_inputs(), subject_id="small")
    assert m.ok, m.error
    assert m.repeats >= 10 and len(m.times_ms) == m.repeats and all(t > 0 for t in m.times_ms)
    assert m.threads["intra_op"] == 1 and m.machine and m.timestamp
    assert m.versions["torch"] == torch.__version__
    assert any(kernel in k.op for k in m.kernels), m.kernels
    if backend == "onnxruntime":
        import onnxruntime

        assert m.versions["onnxruntime"] == onnxruntime.__version__
        # the optimised graph: BatchNormalization was folded into the conv
        assert not any(k.op == "BatchNormalization" for k in m.kernels)
        assert all(k.time_ms is not None for k in m.kernels if k.op.endswith("Conv"))
    assert torch.get_num_threads() >= 1  # restored after the run


@pytest.mark.timing
def test_spread_check_remeasures_until_max_rounds():
    m = get_profiler("eager", warmup=1, repeats=5, min_round_s=0.0, max_spread=0.0, max_rounds=3,
                     kernel_iters=0).profile(Small(), get_target("cpu-eager"), small_inputs())
    assert m.rounds == 3 and len(m.info["round_medians_ms"]) == 3 and m.info["spread_ok"] is False


def test_profilers_take_exported_artefacts(tmp_path):
    model, inputs = Small().eval(), small_inputs()
    onnx_path = export_onnx(model, inputs, tmp_path / "small.onnx")
    m = get_profiler("onnxruntime", **FAST).profile(onnx_path, get_target("cpu-ort"), inputs)
    assert m.ok and m.subject.endswith("small.onnx")
    ts = tmp_path / "small.pt"
    torch.jit.trace(model, inputs).save(str(ts))
    assert get_profiler("eager", **FAST).profile(ts, get_target("cpu-eager"), inputs).ok
    missing = get_profiler("eager", **FAST).profile(tmp_path / "nope.pt", get_target("cpu-eager"), inputs)
    assert not missing.ok and "no such file" in missing.error


def test_onnxruntime_times_a_bf16_network_in_float32_and_leaves_it_bf16():
    model = Small().eval().to(torch.bfloat16)
    inputs = tuple(x.to(torch.bfloat16) for x in small_inputs())
    m = get_profiler("onnxruntime", **FAST).profile(model, get_target("cpu-ort"), inputs)
    assert m.ok, m.error
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}  # the caller's module is untouched


def test_a_network_that_fails_to_export_is_a_failed_measurement_not_an_exception():
    class NoExport(nn.Module):
        def forward(self, x):
            if torch.jit.is_tracing() or torch.compiler.is_compiling():
                raise RuntimeError("this network cannot be exported")
            return x + 1

    m = get_profiler("onnxruntime", **FAST).profile(NoExport(), get_target("cpu-ort"), small_inputs(), subject_id="bad")
    assert not m.ok and "cannot be exported" in m.error and m.times_ms == ()
    assert Measurement.from_json(m.to_json()).error == m.error  # storable as it is


def test_bad_profiler_input_is_named():
    with pytest.raises(UnknownBackendError, match="target.backend: got 'tflite'"):
        get_profiler("tflite")
    with pytest.raises(InvalidTargetError, match="target.backend: got 'onnxruntime'; valid: eager"):
        get_profiler("eager", **FAST).profile(Small(), get_target("cpu-ort"), small_inputs())
    with pytest.raises(InvalidTargetError, match="target.shape"):
        get_profiler("eager", **FAST).profile(Small(), get_target("cpu-eager"))
    with pytest.raises(ValueError, match="repeats: got 0"):
        get_profiler("eager", repeats=0)
    # a Target with a shape needs no inputs
    assert get_profiler("eager", **FAST).profile(Small(), Target("cpu", "eager", threads=1, shape=(3, 8, 8))).ok


def test_a_missing_runtime_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(BackendNotInstalledError, match=r"pip install 'nas-service\[latency\]'"):
        get_profiler("onnxruntime")


@pytest.mark.slow
def test_compile_profiler_runs_inductor():
    m = get_profiler("compile", **FAST).profile(Small(), get_target("cpu-compile"), small_inputs())
    assert m.ok, m.error
    assert m.versions["compile_mode"] == "default" and m.median_ms > 0


# -- graphs, rules, kernels --------------------------------------------------------------
def nb201_graphs(n: int, seed: int = 0):
    space = get_space("nb201")
    archs = [space.sample(RandomSuggest(seed + i)) for i in range(n)]
    return space, archs, [trace(space.materialize(a), space.example_inputs(a)) for a in archs]


def test_trace_records_ops_shapes_and_data_edges():
    g = trace(Small(), small_inputs())
    assert [n.op for n in g.nodes] == ["conv", "bn", "relu", "mean", "linear"]
    conv = g.nodes[0]
    assert conv.inputs == (-1,) and conv.out_shape == (1, 8, 16, 16)
    assert conv.attr["cin"] == 3 and conv.attr["cout"] == 8 and conv.attr["k"] == 3
    assert conv.flops == 2 * 8 * 16 * 16 * 3 * 9
    assert g.nodes[1].inputs == (0,) and g.outputs == (4,)
    module, inputs = build_ops(g.nodes[:3])  # a kernel rebuilt alone runs with the traced shapes
    assert module(*inputs).shape == (1, 8, 16, 16)


def test_kernels_apply_graph_rewrites_and_fusion_rules():
    _, _, (g,) = nb201_graphs(1, seed=3)
    target = get_target("cpu-ort")
    plain = kernels(g, FusionRules.none(target))
    assert len(plain) == len(g.nodes)  # eager: every op its own kernel
    rules = FusionRules(target, frozenset({("conv", "bn")}), dead_code=True, fold_constants=True,
                        fold_identity=True, cse=True)
    fused = kernels(g, rules)
    assert len(fused) < len(plain)
    assert "conv+bn" in {k.type for k in fused}
    assert "zeros" not in {k.type for k in fused}
    assert FusionRules.from_dict(json.loads(rules.to_json())) == rules


@pytest.mark.timing
def test_learned_rules_find_onnxruntime_fusion_and_eager_none():
    _, _, graphs = nb201_graphs(3)
    ort = learn_rules(graphs, get_target("cpu-ort"), passes=2)
    assert ("conv", "bn") in ort.fusible  # BN folded into the conv
    assert ort.dead_code and ort.fold_constants
    eager = learn_rules(graphs[:1], get_target("cpu-eager"), passes=2)
    assert not eager.dead_code and not eager.fold_constants and ("conv", "bn") not in eager.fusible
    assert all("t12" in t or "error" in t for t in eager.tests if t["test"] == "pair")


def test_a_fusion_the_optimised_graph_states_survives_timings_that_are_pure_noise():
    """On a loaded machine a pair test's timings can say anything: the fusions ONNX Runtime's
    optimised graph states (conv+bn folded into one Conv) are learned all the same, and pairs
    it runs as two kernels are not made fusible by the graph."""
    import dataclasses

    from latency.profilers import OnnxRuntimeProfiler

    rng = np.random.default_rng(0)

    class Noisy(OnnxRuntimeProfiler):  # the real profiler, whose timings a neighbour drowned
        def profile(self, *args, **kwargs):
            m = super().profile(*args, **kwargs)
            return dataclasses.replace(m, times_ms=tuple(rng.uniform(0.01, 5.0, size=len(m.times_ms))))

    _, _, graphs = nb201_graphs(3)
    rules = learn_rules(graphs, get_target("cpu-ort"), Noisy(warmup=1, repeats=3, max_rounds=1, kernel_iters=0),
                        passes=1)
    assert ("conv", "bn") in rules.fusible
    pairs = {tuple(t["ops"]): t for t in rules.tests if t["test"] == "pair" and "error" not in t}
    assert pairs[("conv", "bn")]["fused_in_graph"] is True
    assert any(not t["fused_in_graph"] for t in pairs.values())  # the graph does not make every pair fusible


# -- latency models ----------------------------------------------------------------------
def test_latency_model_registry_and_bad_input():
    with pytest.raises(UnknownLatencyModelError, match="name: got 'magic'; valid latency models:"):
        get_latency_model("magic")
    with pytest.raises(ValueError, match="bogus: not a parameter of latency model 'kernel-sum'"):
        get_latency_model("kernel-sum", bogus=1)
    _, _, graphs = nb201_graphs(2)
    m = get_latency_model("flops-linear", target=get_target("cpu-ort"))  # a model for any Target ignores it
    with pytest.raises(ValueError, match="y: got 1 latencies for 2 networks"):
        m.fit(graphs, [1.0])
    with pytest.raises(ValueError, match="y: got NaN or infinite"):
        m.fit(graphs, [1.0, float("nan")])
    with pytest.raises(ValueError, match="y: got a latency <= 0"):
        m.fit(graphs, [1.0, -2.0])
    with pytest.raises(ValueError, match="X: got ndarray"):
        m.fit([np.zeros(3), np.zeros(3)], [1.0, 2.0])
    with pytest.raises(ValueError, match="adaptive_rounds: got -1"):
        get_latency_model("kernel-sum", target=get_target("cpu-ort"), adaptive_rounds=-1).fit(graphs, [1.0, 2.0])


@pytest.mark.slow
def test_kernel_sum_predicts_held_out_networks_on_onnxruntime(tmp_path):
    from scipy.stats import spearmanr

    space, archs, graphs = nb201_graphs(36, seed=100)
    target = get_target("cpu-ort")
    prof = get_profiler("onnxruntime", kernel_iters=0)
    # exported once, timed in three interleaved passes; each network's fastest median counts (as
    # the benchmark and the rule tests time): a neighbour's burst slows one pass of a network
    nets = [(export_onnx(space.materialize(a), space.example_inputs(a), tmp_path / f"{i}.onnx"), space.example_inputs(a))
            for i, a in enumerate(archs)]
    passes = np.array([[prof.profile(path, target, inputs).median_ms for path, inputs in nets] for _ in range(3)])
    y = passes.min(axis=0)
    train, held = slice(0, 24), slice(24, None)
    model = get_latency_model("kernel-sum", target=target, random_state=0).fit(graphs[train], y[train])
    pred = model.predict(graphs[held])
    err = np.abs(pred - y[held]) / y[held]
    # the bar is 15 %, or twice the machine's own run-to-run spread measured here when that is larger:
    # on a loaded machine no model predicts better than the measurements repeat (CI once: a median
    # error of 0.17 in a run whose spread was not recorded); on a quiet one the spread is a few percent
    spread = float(np.median((passes[:, held].max(axis=0) - y[held]) / y[held]))
    bar = max(0.15, 2 * spread)
    assert np.median(err) < bar, (np.median(err), bar, err)
    assert spearmanr(pred, y[held])[0] > 0.8
    flops = get_latency_model("flops-linear").fit(graphs[train], y[train]).predict(graphs[held])
    # at least as good as the FLOPs proxy, within timing noise (12 networks can swap two close
    # medians); the benchmark, with 200 networks in 3 passes, is where the two are compared
    # (ONNX Runtime: 90 % vs 12 % within 10 %)
    assert np.median(err) < 1.15 * np.median(np.abs(flops - y[held]) / y[held]) + spread
    # architectures work as X when the model knows the space (traced once, cached)
    by_arch = get_latency_model("kernel-sum", target=target, space=space, rules=model.rules_).fit(archs[train], y[train])
    assert np.allclose(by_arch.predict(archs[held]), pred, rtol=0.05)


# -- storage and jobs --------------------------------------------------------------------
def test_store_keeps_targets_measurements_and_models(sqlite_url):
    from nas.storage import Store

    store = Store(sqlite_url)
    m = get_profiler("eager", **FAST).profile(Small(), get_target("cpu-eager"), small_inputs(), subject_id="s1")
    failed = Measurement(get_target("cpu-ort"), "s2", error="export failed")
    assert store.add_measurements([m, failed]) == 2
    assert {t.name for t in store.list_targets()} == {"cpu-eager", "cpu-ort"}
    assert store.find_target("cpu-eager") == get_target("cpu-eager")
    with pytest.raises(KeyError, match="target: got 'gpu'; known targets: "):
        store.find_target("gpu")
    (back,) = store.load_measurements(get_target("cpu-eager"))
    assert back == m
    assert [x.error for x in store.load_measurements(ok_only=False, subject="s2")] == ["export failed"]
    assert store.load_measurements(ok_only=True, subject="s2") == []
    recipe = {"kind": "ridge-rf", "space": "nb201", "training": [{"arch": {"arch_id": "a"}, "latency_ms": 1.5}]}
    store.save_latency_model(get_target("cpu-eager"), "ridge-rf", recipe, 3, {"within_10pct": 0.5})
    loaded, info = store.load_latency_model(get_target("cpu-eager"))
    assert info == {"kind": "ridge-rf", "n_measurements": 3, "within_10pct": 0.5}
    assert loaded == recipe  # JSON of our own data, never a pickled estimator
    assert store.load_latency_model(get_target("cpu-ort")) is None


def _tiny_fit():
    _, _, graphs = nb201_graphs(3)
    return graphs, [1.0, 2.0, 3.0]


def test_nb201_offers_profiled_latency_beside_its_tables():
    space = get_space("nb201")
    assert space.resolve_metric("latency_ms", "cpu-ort") == "latency_ms@cpu-ort"
    assert "latency_ms@cpu-ort" not in space.metric_keys()  # never in the table
    assert "latency_ms@cpu-ort" not in space.lookup(space.sample(RandomSuggest(0)))


def test_a_job_profiles_its_latency_objective_and_stores_the_measurements(sqlite_url):
    from nas import run_job
    from nas.storage import Store

    store = Store(sqlite_url)
    spec = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "cpu-ort"}],
            "constraints": [{"name": "latency_ms", "device": "cpu-ort", "max": 50.0}],
            "strategy": {"name": "random", "batch_size": 3}, "budget": {"evaluations": 6}, "seed": 1,
            "execution": {"backend": "inline"}}
    result = run_job(spec, store)
    trials = store.load_trials(result.job_id)
    assert len(trials) == 6 and all(t.state == "complete" for t in trials)
    ms = store.load_measurements(get_target("cpu-ort"), job_id=result.job_id)
    assert sorted(m.subject for m in ms) == sorted(t.arch_id for t in trials)
    by_arch = {m.subject: m.median_ms for m in ms}
    assert all(t.values["latency_ms@cpu-ort"] == pytest.approx(by_arch[t.arch_id]) for t in trials)


@pytest.mark.slow
def test_predictor_guided_screens_profiled_latency_with_the_kernel_sum_model(sqlite_url):
    from nas import run_job
    from nas.storage import Store

    store = Store(sqlite_url)
    spec = {"space": {"name": "nb201"}, "objectives": [{"name": "accuracy"}, {"name": "latency_ms", "device": "cpu-ort"}],
            "strategy": {"name": "predictor-guided", "predictor": "ridge-rf", "init": 6, "batch_size": 6,
                         "latency_sample": 16},
            "budget": {"evaluations": 18}, "seed": 0, "execution": {"backend": "inline"}}
    result = run_job(spec, store)
    trials = store.load_trials(result.job_id)
    exploit = [t for t in trials if (t.source or {}).get("pick") == "exploit"]
    assert exploit and all(t.source["predictors"]["latency_ms@cpu-ort"] == "kernel-sum" for t in exploit)
    assert any("latency model kernel-sum for cpu-ort" in msg for _, msg in store.logs(result.job_id))
    # adaptive sampling: the network the latency model knows least is measured each round
    assert any((t.source or {}).get("pick") == "latency-adaptive" for t in trials)


def test_the_onnxruntime_profiler_runs_where_torch_is_not_installed(tmp_path):
    """A device agent may have ONNX Runtime only: profiling an exported file must not need torch."""
    import subprocess

    path = export_onnx(Small().eval(), small_inputs(), tmp_path / "small.onnx")
    code = f"""
import sys
sys.modules["torch"] = None  # import torch raises ImportError
import numpy as np
from latency import get_target
from latency.profilers import get_profiler
m = get_profiler("onnxruntime", warmup=1, repeats=5, min_round_s=0.0, kernel_iters=1).profile(
    {str(path)!r}, get_target("cpu-ort"), (np.random.rand(1, 3, 16, 16).astype("float32"),))
assert m.ok, m.error
assert "torch" not in m.versions and m.versions["onnxruntime"]
print(m.median_ms)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) > 0


def test_a_job_on_a_target_whose_runtime_is_missing_is_refused_up_front(monkeypatch):
    from nas.engine import prepare_job
    from nas.errors import SpecError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    spec = {"space": {"name": "nb201"}, "objectives": [{"name": "latency_ms", "device": "cpu-ort"}],
            "budget": {"evaluations": 5}}
    with pytest.raises(SpecError, match=r"objectives.device: got 'cpu-ort' \(backend 'onnxruntime' is not installed"):
        prepare_job(spec)


def test_a_network_that_fails_to_export_leaves_its_trial_unmeasured_and_the_job_goes_on(sqlite_url, monkeypatch):
    import latency.profilers as profilers
    from nas import run_job
    from nas.storage import Store

    real, calls = profilers.export_onnx, []

    def flaky(module, inputs, path, opset=17):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("exporter: unsupported operator aten::frobnicate")
        return real(module, inputs, path, opset)

    monkeypatch.setattr(profilers, "export_onnx", flaky)
    store = Store(sqlite_url)
    spec = {"space": {"name": "nb201"}, "objectives": [{"name": "latency_ms", "device": "cpu-ort"}],
            "strategy": {"name": "random", "batch_size": 2}, "budget": {"evaluations": 3}, "seed": 3,
            "execution": {"backend": "inline"}}
    result = run_job(spec, store)
    trials = store.load_trials(result.job_id)
    assert store.get_job(result.job_id).state == "completed"
    assert [t.state for t in trials].count("unmeasured") == 1 and result.n_evaluations == 3
    failed = [m for m in store.load_measurements(job_id=result.job_id) if not m.ok]
    assert len(failed) == 1 and "aten::frobnicate" in failed[0].error
    assert any("profiling" in msg and "failed" in msg for _, msg in store.logs(result.job_id))
