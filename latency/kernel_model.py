"""Latency models of whole networks on one Target: ``kernel-sum`` (compiler-aware), ``roofline``, ``flops-linear``.

All three are scikit-learn regressors in milliseconds whose ``X`` is a sequence of networks:
traced :class:`~latency.graph.OpGraph` objects, or architectures when ``space`` is given
(they are materialised and traced once, then cached by ``arch_id``).

``kernel-sum`` is nn-Meter's model with the per-Target overhead of DESIGN §7:

1. the fusion rules of the Target (learned by timing tiny models, :mod:`latency.fusion`)
   split each network into the kernels the backend really runs;
2. each distinct kernel is profiled alone on the Target (once; a process-wide cache keeps
   the timings), and a random forest per kernel type learns its latency from shapes,
   FLOPs, bytes and alignment residues, with nn-Meter's adaptive sampling: kernels the
   forest predicts worse than 10 % get channel-perturbed neighbours measured and added;
3. ``y ~ a * sum(kernel predictions) + b * n_kernels + c`` is fitted (non-negative) on the
   whole-network measurements: what a network costs beyond its kernels (dispatch, memory
   planning, the runtime's own call) is learned per Target.

Kernel types never profiled fall back to the roofline of the Target (``max(FLOPs / peak,
bytes / bandwidth)``), whose peak and bandwidth are measured on the Target by micro-benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ._target import Target
from .fusion import FusionRules, KernelSpec, kernel_features, kernels, learn_rules
from .graph import OpGraph, build_ops, trace

__all__ = ["KernelSumModel", "RooflineModel", "FlopsLinearModel", "as_graphs", "device_peaks"]

_GRAPHS: dict[tuple[str, str], OpGraph] = {}  # (space repr, arch_id) -> traced graph
_KERNEL_MS: dict[tuple[str, tuple], float] = {}  # (target key, kernel key) -> measured ms (t0 removed)
_PEAKS: dict[str, tuple[float, ...]] = {}  # target key -> (GFLOP/s, GB/s, t0 ms, empty-call ms)


def as_graphs(X: Sequence[Any], space: Any = None) -> list[OpGraph]:
    """``X`` as traced graphs: OpGraphs pass through; architectures need ``space``."""
    if isinstance(X, OpGraph):
        raise ValueError("X: got one OpGraph; valid: a sequence of OpGraphs or architectures")
    out = []
    for x in X:
        if isinstance(x, OpGraph):
            out.append(x)
            continue
        if space is None or not hasattr(x, "arch_id"):
            raise ValueError(f"X: got {type(x).__name__}; valid: OpGraph objects, or architectures with space= set")
        key = (repr(space), x.arch_id)
        if key not in _GRAPHS:
            _GRAPHS[key] = trace(space.materialize(x), space.example_inputs(x))
        out.append(_GRAPHS[key])
    return out


def _check_y(y: Any, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(y) != n:
        raise ValueError(f"y: got {len(y)} latencies for {n} networks; valid: one per network")
    if not np.all(np.isfinite(y)):
        raise ValueError("y: got NaN or infinite latencies; valid: finite milliseconds")
    if np.any(y <= 0):
        raise ValueError(f"y: got a latency <= 0 ({y.min()!r} ms); valid: positive milliseconds")
    return y


def _profiler(target: Target, **protocol: Any):
    from .profilers import get_profiler

    return get_profiler(target.backend, **{"warmup": 5, "repeats": 30, "max_spread": 0.15, "kernel_iters": 0,
                                           **protocol})


def device_peaks(target: Target) -> tuple[float, ...]:
    """(GFLOP/s, GB/s, per-call ms, empty-call ms) of ``target``: a large matmul, a large add, an
    almost empty model (one relu on one element) and a model whose output does not depend on
    its input (``zeros_like``: what a compiler folds to a constant), each timed on the Target's
    backend. Cached per Target in the process."""
    if target.key in _PEAKS:
        return _PEAKS[target.key]
    from .graph import OpNode

    prof = _profiler(target, repeats=10)
    n = 512
    mm = OpNode(0, "matmul", (-1, -1), ((n, n), (n, n)), (n, n))
    big = (1, 64, 128, 128)
    add = OpNode(0, "add", (-1, -1), (big, big), big)
    tiny = OpNode(0, "relu", (-1,), ((1, 1),), (1, 1))
    empty = OpNode(0, "zeros", (-1,), ((1, 1),), (1, 1))
    t = {}
    for name, node in (("mm", mm), ("add", add), ("t0", tiny), ("empty", empty)):
        module, inputs = build_ops([node])
        m = prof.profile(module, target, inputs, subject_id=f"peak-{name}")
        t[name] = m.median_ms if m.ok else math.nan
    t0 = t["t0"]
    gflops = 2 * n ** 3 / max(t["mm"] - t0, 1e-3) / 1e6
    gbps = 3 * 4 * math.prod(big) / max(t["add"] - t0, 1e-3) / 1e6
    peaks = (gflops, gbps, t0, t["empty"] if math.isfinite(t["empty"]) else t0)
    if not all(math.isfinite(v) for v in peaks):  # a failed probe: raise now, never cache NaN peaks
        raise RuntimeError(f"measuring the peaks of {target.name} failed: {t}")
    _PEAKS[target.key] = peaks
    return peaks


def _roofline_ms(k: KernelSpec, gflops: float, gbps: float) -> float:
    return max(k.flops / (gflops * 1e6), k.bytes / (gbps * 1e6))


def _calibrate(parts: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative ``y ~ parts @ coef + c`` (last coef = c); with few networks, only the scale."""
    from scipy.optimize import nnls

    A = np.column_stack([parts, np.ones(len(y))])
    if len(y) < 2 * A.shape[1]:  # too few networks for a factor per column: one scale, no intercept
        scale = float(np.median(y / np.maximum(parts.sum(axis=1), 1e-9)))
        return np.r_[np.full(parts.shape[1], scale), 0.0]
    # relative errors matter (the +-10 % criterion): weight each network by 1 / y
    w = 1.0 / y
    coef, _ = nnls(A * w[:, None], y * w)
    return coef


class _GraphModel(RegressorMixin, BaseEstimator):
    def _graphs(self, X) -> list[OpGraph]:
        return as_graphs(X, self.space)

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return self._predict_graphs(self._graphs(X))

    def _predict_graphs(self, graphs: list[OpGraph]) -> np.ndarray:
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of networks
        return tags


class FlopsLinearModel(_GraphModel):
    """The baseline: ``y ~ a * FLOPs + c`` (what a FLOPs-proxy search assumes)."""

    def __init__(self, space: Any = None) -> None:
        self.space = space

    def fit(self, X, y) -> FlopsLinearModel:
        graphs = self._graphs(X)
        y = _check_y(y, len(graphs))
        f = np.array([g.flops for g in graphs])
        A = np.column_stack([f, np.ones(len(f))])
        self.coef_, *_ = np.linalg.lstsq(A, y, rcond=None)
        return self

    def _predict_graphs(self, graphs):
        return self.coef_[0] * np.array([g.flops for g in graphs]) + self.coef_[1]


class RooflineModel(_GraphModel):
    """Kernels after fusion, each at ``max(FLOPs / peak, bytes / bandwidth)`` of the Target, plus
    the per-kernel and per-call overheads; with whole-network measurements, calibrated like
    ``kernel-sum``. Needs no kernel profiling: the prior for a Target with few measurements."""

    def __init__(self, target: Target | None = None, space: Any = None, rules: FusionRules | None = None,
                 peaks: tuple[float, ...] | None = None) -> None:
        self.target, self.space, self.rules, self.peaks = target, space, rules, peaks

    def _setup(self, graphs: list[OpGraph]) -> None:
        if not isinstance(self.target, Target):
            raise ValueError(f"target: got {self.target!r}; valid: a latency.Target")
        self.rules_ = self.rules if self.rules is not None else learn_rules(graphs[:20], self.target)
        self.peaks_ = self.peaks if self.peaks is not None else device_peaks(self.target)

    def _parts(self, graphs: list[OpGraph]) -> np.ndarray:
        gflops, gbps, t0 = self.peaks_[:3]
        rows = []
        for g in graphs:
            ks = kernels(g, self.rules_)
            rows.append([sum(_roofline_ms(k, gflops, gbps) + t0 for k in ks)])
        return np.array(rows)

    def fit(self, X, y=None) -> RooflineModel:
        graphs = self._graphs(X)
        self._setup(graphs)
        if y is None:  # the pure prior: kernels at the device's roofline, each with a call overhead
            self.coef_ = np.array([1.0, self.peaks_[2]])
            return self
        y = _check_y(y, len(graphs))
        self.coef_ = _calibrate(self._parts(graphs), y)
        return self

    def _predict_graphs(self, graphs):
        return self._parts(graphs) @ self.coef_[:-1] + self.coef_[-1]


class KernelSumModel(RooflineModel):
    """nn-Meter's kernel-sum model with a learned per-Target overhead (see the module docstring).

    ``fit`` profiles on this machine every distinct kernel it has not timed yet (the Target
    must be one of this machine's backends); ``kernel_ms`` may instead pass measured kernel
    times, keyed by ``KernelSpec.key``, e.g. from a device agent.
    """

    def __init__(self, target: Target | None = None, space: Any = None, rules: FusionRules | None = None,
                 peaks: tuple[float, ...] | None = None, n_estimators: int = 200,
                 adaptive_rounds: int = 1, adaptive_samples: int = 4, kernel_ms: dict | None = None,
                 random_state: int = 0) -> None:
        super().__init__(target, space, rules, peaks)
        self.n_estimators, self.adaptive_rounds, self.adaptive_samples = n_estimators, adaptive_rounds, adaptive_samples
        self.kernel_ms, self.random_state = kernel_ms, random_state

    # -- kernel timings --------------------------------------------------------------
    def _time_kernels(self, ks: Sequence[KernelSpec]) -> None:
        todo = {}
        for k in ks:
            key = (self.target.key, k.key)
            if key in _KERNEL_MS:
                continue
            if self.kernel_ms and k.key in self.kernel_ms:
                _KERNEL_MS[key] = float(self.kernel_ms[k.key])
                continue
            todo[k.key] = k
        if not todo:
            return
        prof = _profiler(self.target)
        t0 = self.peaks_[2]
        for key, k in todo.items():
            try:
                module, inputs = build_ops(k.nodes)
                m = prof.profile(module, self.target, inputs, subject_id=k.type)
                ms = max(m.median_ms - t0, 0.0) if m.ok else math.nan
            except Exception:
                ms = math.nan  # an op that cannot run alone: its type falls back to the roofline
            _KERNEL_MS[(self.target.key, key)] = ms

    def _neighbours(self, k: KernelSpec, rng: np.random.Generator) -> list[KernelSpec]:
        """nn-Meter's fine-grained sampling: the same kernel with channels drawn in [0.4 C, 1.2 C]."""
        from .graph import OpNode

        out = []
        c = k.nodes[0].in_shapes[0][1] if k.nodes[0].in_shapes and len(k.nodes[0].in_shapes[0]) == 4 else None
        if not c or any(n.op not in ("conv", "bn", "relu", "add", "avgpool", "maxpool") for n in k.nodes):
            return out
        if any(n.attr.get("groups", 1) != 1 or n.attr.get("cin", c) != n.attr.get("cout", c) for n in k.nodes):
            return out  # keep it simple: same-width kernels only
        for _ in range(self.adaptive_samples):
            c2 = int(rng.integers(max(1, int(0.4 * c)), int(1.2 * c) + 1))

            def resize(s: tuple[int, ...]) -> tuple[int, ...]:
                return (s[0], c2, *s[2:]) if len(s) == 4 else s

            nodes = tuple(OpNode(n.id, n.op, n.inputs, tuple(resize(s) for s in n.in_shapes), resize(n.out_shape),
                                 tuple((a, c2 if a in ("cin", "cout") else v) for a, v in n.attrs), n.flops * (c2 / c) ** 2
                                 if n.op == "conv" else n.flops * c2 / c, n.bytes * c2 / c) for n in k.nodes)
            out.append(KernelSpec(nodes))
        return out

    def _fit_forests(self, ks: list[KernelSpec]) -> None:
        from sklearn.ensemble import RandomForestRegressor

        by_type: dict[str, list[KernelSpec]] = {}
        for k in ks:
            if np.isfinite(_KERNEL_MS.get((self.target.key, k.key), math.nan)):
                by_type.setdefault(k.type, []).append(k)
        self.forests_ = {}
        for typ, group in by_type.items():
            Xk = np.stack([kernel_features(k) for k in group])
            yk = np.array([_KERNEL_MS[(self.target.key, k.key)] for k in group])
            self.forests_[typ] = RandomForestRegressor(
                n_estimators=self.n_estimators, min_samples_leaf=1, random_state=self.random_state, n_jobs=1
            ).fit(Xk, np.log(yk + 1e-4))

    def _kernel_pred(self, ks: Sequence[KernelSpec]) -> np.ndarray:
        gflops, gbps = self.peaks_[:2]
        out = np.empty(len(ks))
        for i, k in enumerate(ks):
            exact = _KERNEL_MS.get((self.target.key, k.key))
            if exact is not None and np.isfinite(exact):
                out[i] = exact  # a kernel timed on this Target: the LUT hit nn-Meter keeps too
            elif k.type in self.forests_:
                out[i] = float(np.exp(self.forests_[k.type].predict(kernel_features(k)[None])[0]) - 1e-4)
            else:
                out[i] = _roofline_ms(k, gflops, gbps)
        return np.maximum(out, 0.0)

    def _in_context(self, ks: Sequence[KernelSpec]) -> np.ndarray:
        """Each kernel's time inside a network: the calibrated time for a kernel seen in fit,
        else its alone-time scaled by its type's median calibration ratio."""
        alone = self._kernel_pred(ks)
        out = np.empty(len(ks))
        for i, (k, t) in enumerate(zip(ks, alone)):
            j = self.kernel_index_.get(k.key)
            out[i] = self.theta_[j] if j is not None else t * self.type_ratio_.get(k.type, self.ratio_)
        return out

    def _predict_graphs(self, graphs):
        out = []
        for g in graphs:
            ks = kernels(g, self.rules_)
            # a network the backend reduces to nothing (its output does not depend on its input,
            # e.g. an NB201 cell with no input-output path) costs one call of the runtime
            out.append(self._in_context(ks).sum() + self.intercept_ if ks else self.peaks_[-1])
        # the intercept is fitted freely and can be negative: no network runs faster than one
        # empty call of the runtime, and a latency <= 0 would break every log-scale consumer
        return np.maximum(np.array(out), self.peaks_[-1])

    def _calibrate_kernels(self, graphs: list[OpGraph], y: np.ndarray) -> None:
        """Kernel times in context, from the whole-network measurements, shrunk to the alone-times.

        ``y_i ~ c + sum_k C_ik theta_k`` with ``C`` the kernel counts, solved for ``theta =
        theta_alone * (1 + d)`` by least squares on relative errors plus ``lam * ||d||^2``:
        with few networks the kernels keep their profiled times (the prior); with many, the
        data decide what a kernel costs where the backend fused or overlapped it. ``lam`` is
        chosen by leave-one-out over a small grid (closed form for ridge).
        """
        per_graph = [kernels(g, self.rules_) for g in graphs]
        # networks reduced to nothing are predicted by the empty-call time, not calibrated on
        keep = [i for i, ks in enumerate(per_graph) if ks]
        per_graph, y = [per_graph[i] for i in keep], y[keep]
        keys: dict[tuple, KernelSpec] = {}
        for ks in per_graph:
            for k in ks:
                keys.setdefault(k.key, k)
        self.kernel_index_ = {key: j for j, key in enumerate(keys)}
        prior = np.maximum(self._kernel_pred(list(keys.values())), 1e-5)
        C = np.zeros((len(per_graph), len(keys)))
        for i, ks in enumerate(per_graph):
            for k in ks:
                C[i, self.kernel_index_[k.key]] += 1
        # unknowns: d (relative change of each kernel) and c (per-call intercept, in units of y)
        A = np.column_stack([C * prior[None, :], np.ones(len(y))]) / y[:, None]
        r = (y - C @ prior) / y
        best = None
        for lam in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0):
            P = np.eye(A.shape[1]) * lam
            P[-1, -1] = 1e-6  # the intercept is free
            H = np.linalg.solve(A.T @ A + P, A.T)
            sol = H @ r
            hat = np.einsum("ij,ji->i", A, H)
            loo = np.mean(((r - A @ sol) / np.maximum(1 - hat, 1e-3)) ** 2)
            if best is None or loo < best[0]:
                best = (loo, lam, sol)
        _, self.lam_, sol = best
        self.theta_ = np.maximum(prior * (1 + sol[:-1]), 0.0)
        self.kernel_counts_ = C.sum(axis=0)  # how often each kernel occurred in the measured networks
        self.intercept_ = float(sol[-1])
        ratios: dict[str, list[float]] = {}
        for k, j in zip(keys.values(), range(len(keys))):
            ratios.setdefault(k.type, []).append(self.theta_[j] / prior[j])
        self.type_ratio_ = {t: float(np.median(v)) for t, v in ratios.items()}
        self.ratio_ = float(np.median(self.theta_ / prior))
        self.coef_ = np.r_[self.theta_, self.intercept_]

    def fit(self, X, y=None) -> KernelSumModel:
        """Fit on networks ``X`` and their measured latencies ``y`` (ms). With ``y=None`` (or
        fewer than 3 networks) the kernels keep their profiled times: the uncalibrated prior."""
        for name, v, lo in (("n_estimators", self.n_estimators, 1), ("adaptive_rounds", self.adaptive_rounds, 0),
                            ("adaptive_samples", self.adaptive_samples, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}: got {v!r}; valid: an integer >= {lo}")
        graphs = self._graphs(X)
        if not graphs:
            raise ValueError("X: got no networks; valid: at least one (its kernels are profiled)")
        y = None if y is None else _check_y(y, len(graphs))
        self._setup(graphs)
        ks = list({k.key: k for g in graphs for k in kernels(g, self.rules_)}.values())
        self._time_kernels(ks)
        self._fit_forests(ks)
        rng = np.random.default_rng(self.random_state)
        for _ in range(self.adaptive_rounds):
            # out-of-sample check of each forest on its own kernels: where it misses by more than
            # 10 %, measure channel neighbours (the staircase lives there) and refit
            bad = []
            for k in ks:
                f = self.forests_.get(k.type)
                truth = _KERNEL_MS.get((self.target.key, k.key), math.nan)
                if f is None or not np.isfinite(truth) or truth <= 0 or len(f.estimators_) < 2:
                    continue
                loo = np.mean([np.exp(e.predict(kernel_features(k)[None])[0]) for e in f.estimators_[:20]])
                if abs(loo - truth) / truth > 0.1:
                    bad.append(k)
            extra = [n for k in bad for n in self._neighbours(k, rng)]
            if not extra:
                break
            self._time_kernels(extra)
            ks = ks + extra
            self._fit_forests(ks)
        self.n_kernels_profiled_ = len(ks)
        if y is None or len(y) < 3:
            self.kernel_index_, self.theta_, self.type_ratio_, self.ratio_ = {}, np.zeros(0), {}, 1.0
            self.kernel_counts_ = np.zeros(0)
            self.intercept_, self.lam_ = self.peaks_[2], None  # one call of the runtime
            self.coef_ = np.r_[self.intercept_]
            return self
        self._calibrate_kernels(graphs, y)
        return self
