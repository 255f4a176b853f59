"""``hwgpt-s``: the 10,000 GPT-2 small subnets of HW-GPT-Bench, with measured metrics.

The table is a *pool*: the structured choices (embedding width, depth, heads and MLP
ratio per layer, bias) admit about 10^13 subnets, of which 10,000 were measured. So
``sample`` asks every structured choice and then snaps to the nearest measured subnet
(L1 distance on the encoding); ``from_params`` accepts
pool members only, and ``nearest(params)`` snaps explicitly.

``cpu_meta`` is left out: its latencies disagree with every other CPU (Spearman 0.25;
see the data's SOURCE.md), so it would mislead a search.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._architecture import Architecture
from ._base import Choice, MetricInfo, Suggest, TabularSpace
from ._data import data_file
from ._errors import InvalidArchitectureError
from ._registry import register_space

__all__ = ["HWGPTSpace"]

EMBED = (192, 384, 768)
LAYERS = (10, 11, 12)
HEADS = (4, 8, 12)
MLP = (2, 3, 4)
MAX_LAYERS = 12
DEVICES = ("P100", "a100", "a40", "a6000", "h100", "rtx2080", "rtx3080", "v100",
           "cpu_a6000", "cpu_alldlc", "cpu_mlgpu", "cpu_p100", "helix_cpu")
EXCLUDED_DEVICES = {"cpu_meta": "unreliable in the source table (Spearman 0.25 with the other CPUs)"}


@register_space
class HWGPTSpace(TabularSpace):
    name = "hwgpt-s"
    version = "1"

    def choices(self) -> list[Choice]:
        out = [Choice("embed_dim", EMBED, "embedding width"), Choice("n_layer", LAYERS, "number of layers")]
        out += [Choice(f"n_head_{i}", HEADS, f"heads of layer {i} (if present)") for i in range(MAX_LAYERS)]
        out += [Choice(f"mlp_ratio_{i}", MLP, f"MLP ratio of layer {i} (if present)") for i in range(MAX_LAYERS)]
        return out + [Choice("bias", (False, True), "linear layers with bias")]

    def metrics(self) -> dict[str, MetricInfo]:
        return {
            "perplexity": MetricInfo("perplexity", "", "minimize", (), "perplexity of the inherited-weight subnet",
                                     of_function=True),
            "accuracy": MetricInfo("accuracy", "", "maximize", (), "next-token accuracy", of_function=True),
            "params": MetricInfo("params", "count", "minimize"),
            "flops": MetricInfo("flops", "FLOPs", "minimize"),
            "latency_ms": MetricInfo("latency_ms", "ms", "minimize", DEVICES,
                                     "measured latency (cpu_meta left out: unreliable)"),
            "memory_mb": MetricInfo("memory_mb", "MB", "minimize", ("a100",), "peak GPU memory"),
        }

    def resolve_metric(self, name: str, device: str | None = None, *, field: str = "objective") -> str:
        if name == "latency_ms" and device in EXCLUDED_DEVICES:
            from ._errors import UnknownMetricError

            raise UnknownMetricError(f"{field}.device", device,
                                     f"{', '.join(DEVICES)} ({device} is {EXCLUDED_DEVICES[device]})")
        return super().resolve_metric(name, device, field=field)

    # -- architectures -------------------------------------------------------------
    @staticmethod
    def _check(params: Mapping[str, Any]) -> dict[str, Any]:
        keys = ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")
        extra = sorted(set(params) - set(keys))
        if extra:
            raise InvalidArchitectureError(f"hwgpt-s: unknown key {extra[0]!r}; keys are {', '.join(keys)}")
        for k in keys:
            if k not in params:
                raise InvalidArchitectureError(f"hwgpt-s: missing key {k!r}")
        for k, valid in (("embed_dim", EMBED), ("n_layer", LAYERS), ("bias", (False, True))):
            want = bool if k == "bias" else int
            if not isinstance(params[k], want) or (want is int and isinstance(params[k], bool)) \
                    or params[k] not in valid:
                raise InvalidArchitectureError(f"hwgpt-s: {k} is {params[k]!r}; valid: {', '.join(map(str, valid))}")
        n = params["n_layer"]
        for k, valid in (("n_head", HEADS), ("mlp_ratio", MLP)):
            if not isinstance(params[k], (list, tuple)):
                raise InvalidArchitectureError(f"hwgpt-s: {k} is {params[k]!r}; it needs a list of {n} values")
            v = list(params[k])
            if len(v) != n:
                raise InvalidArchitectureError(f"hwgpt-s: {k} has {len(v)} entries; n_layer is {n}, so it needs {n}")
            bad = [x for x in v if not isinstance(x, int) or isinstance(x, bool) or x not in valid]
            if bad:
                raise InvalidArchitectureError(f"hwgpt-s: {k} contains {bad[0]!r}; valid: {', '.join(map(str, valid))}")
        return {"embed_dim": params["embed_dim"], "n_layer": n, "n_head": list(params["n_head"]),
                "mlp_ratio": list(params["mlp_ratio"]), "bias": params["bias"]}

    def from_params(self, params: Mapping[str, Any]) -> Architecture:
        arch = self._arch(self._check(params))
        if arch.arch_id not in self._table()["index"]:
            raise InvalidArchitectureError(
                "hwgpt-s: this subnet is not one of the 10,000 measured by HW-GPT-Bench; "
                "use space.nearest(params) to snap it to the closest measured one")
        return arch

    def nearest(self, params: Mapping[str, Any]) -> Architecture:
        """The measured subnet closest to ``params`` (which may lie outside the pool)."""
        arch = self._arch(self._check(params))
        index = self._table()["index"]
        if arch.arch_id in index:
            return self._table()["archs"][index[arch.arch_id]]
        cache = self._cache.data
        if "tree" not in cache:  # a ball tree answers in tens of microseconds, a scan in a millisecond
            from sklearn.neighbors import BallTree

            cache["tree"] = BallTree(self.encoded_table().astype(np.float64), metric="manhattan")
        _, ind = cache["tree"].query(self.encode([arch]).astype(np.float64), k=1)
        return self._table()["archs"][int(ind[0, 0])]

    def sample(self, suggest: Suggest) -> Architecture:
        embed = suggest.suggest_categorical("embed_dim", EMBED)
        n = suggest.suggest_categorical("n_layer", LAYERS)
        heads = [suggest.suggest_categorical(f"n_head_{i}", HEADS) for i in range(n)]
        mlp = [suggest.suggest_categorical(f"mlp_ratio_{i}", MLP) for i in range(n)]
        bias = suggest.suggest_categorical("bias", (False, True))
        return self.nearest({"embed_dim": embed, "n_layer": n, "n_head": heads, "mlp_ratio": mlp, "bias": bias})

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """One-hot width and depth, heads and MLP ratio per layer (0 past the last layer), bias,
        then four summaries (width, depth, total heads, a parameter-count proxy) that tree
        predictors need to see size from a few labels."""
        base = 3 + 3 + 2 * MAX_LAYERS + 1
        out = np.zeros((len(archs), base + 4), dtype=np.float32)
        for r, a in enumerate(archs):
            p = a.params
            out[r, EMBED.index(p["embed_dim"])] = 1.0
            out[r, 3 + LAYERS.index(p["n_layer"])] = 1.0
            n = p["n_layer"]
            out[r, 6:6 + n] = np.asarray(p["n_head"], dtype=np.float32) / 12.0
            out[r, 6 + MAX_LAYERS:6 + MAX_LAYERS + n] = np.asarray(p["mlp_ratio"], dtype=np.float32) / 4.0
            out[r, base - 1] = float(p["bias"])
            d = p["embed_dim"]
            out[r, base:] = (d / 768.0, n / 12.0, sum(p["n_head"]) / 144.0,
                             sum(d * d * (4 + 2 * m) for m in p["mlp_ratio"]) / (12 * 768 * 768 * 12))
        return out

    def graph(self, arch: Architecture):
        import networkx as nx

        p = arch.params
        d = p["embed_dim"]
        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        g.add_node("embed", op="embedding", width=d)
        prev = "embed"
        for i in range(p["n_layer"]):
            attn, mlp = f"attn{i}", f"mlp{i}"
            g.add_node(attn, op="attention", width=d, heads=p["n_head"][i], bias=p["bias"])
            g.add_node(mlp, op="mlp", width=d, hidden=d * p["mlp_ratio"][i], bias=p["bias"])
            g.add_edge(prev, attn)
            g.add_edge(attn, mlp)
            prev = mlp
        g.add_node("lm_head", op="linear", width=d)
        g.add_edge(prev, "lm_head")
        return g

    # -- the table -----------------------------------------------------------------
    def _table(self) -> dict[str, Any]:
        cache = self._cache.data
        if "table" not in cache:
            path = data_file("hw-gpt-bench", "hwgpt_s_ppl_latency.csv")
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            archs = []
            for r in rows:
                a = json.loads(r["arch"])
                n = a["sample_n_layer"]
                archs.append(self._arch({"embed_dim": a["sample_embed_dim"], "n_layer": n,
                                         "n_head": a["sample_n_head"][:n], "mlp_ratio": a["sample_mlp_ratio"][:n],
                                         "bias": bool(a["sample_bias"])}))
            col = lambda c: np.array([float(r[c]) for r in rows])  # noqa: E731
            columns = {"perplexity": col("perplexity"), "accuracy": col("accuracy"), "params": col("params"),
                       "flops": col("flops"), "memory_mb@a100": col("mem_mb_a100")}
            columns.update({f"latency_ms@{d}": col(f"lat_ms_{d}") for d in DEVICES})
            cache["table"] = {"archs": archs, "index": {a.arch_id: i for i, a in enumerate(archs)}, "columns": columns}
        return cache["table"]

    def enumerate(self) -> list[Architecture]:
        return list(self._table()["archs"])

    def index_of(self, arch: Architecture) -> int:
        try:
            return self._table()["index"][arch.arch_id]
        except KeyError:
            self.validate(arch)
            raise InvalidArchitectureError(f"hwgpt-s: {arch!r} is not in the pool") from None

    def metric_array(self, key: str) -> np.ndarray:
        columns = self._table()["columns"]
        if key not in columns:
            name, _, device = key.partition("@")
            key = self.resolve_metric(name, device or None)  # raises with the valid choices
        return columns[key]
