"""``nb201``: the NAS-Bench-201 cell (6 edges x 5 operations, 15,625 architectures).

Quality comes from NATS-Bench test accuracies (200 epochs); latency from the HELP tables
(27 devices, every architecture) and from nn-Meter (4 edge devices, 2,000 architectures:
the others are "not measured", NaN in ``metric_array`` and absent from ``lookup``).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._architecture import Architecture
from ._base import PROFILED_DEVICES, Choice, ConfigOption, MetricInfo, Suggest, TabularSpace
from ._data import data_file
from ._errors import InvalidArchitectureError, UnknownMetricError
from ._registry import register_space

__all__ = ["NB201Space", "OPS", "EDGES", "HELP_DEVICES", "NNMETER_DEVICES"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# edge "j<-i": from node i to node j, in the order of NB201's arch strings
EDGES = ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")
_OP_INDEX = {op: i for i, op in enumerate(OPS)}

HELP_DEVICES = (
    "1080ti_1", "1080ti_32", "1080ti_256", "2080ti_1", "2080ti_32", "2080ti_256",
    "titanx_1", "titanx_32", "titanx_256", "titanxp_1", "titanxp_32", "titanxp_256",
    "titan_rtx_1", "titan_rtx_32", "titan_rtx_256", "gold_6226", "gold_6240", "silver_4114",
    "silver_4210r", "essential_ph_1", "pixel2", "samsung_a50", "samsung_s7", "pixel3", "raspi4",
    "fpga", "eyeriss",
)
# nn-Meter device names, mapped to the folder their table is in
NNMETER_DEVICES = {
    "cortexA76cpu_tflite21": "cpu",
    "adreno640gpu_tflite21": "gpu",
    "adreno630gpu_tflite21": "gpu1",
    "myriadvpu_openvino2019r2": "vpu",
}
_DATASET_COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "ImageNet16-120": "ImageNetTestAccuracy200Epochs",
}
_NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
N_ARCHS = 5 ** 6
# input-to-output paths of the cell as edge positions in EDGES: 0->3, 0->1->3, 0->2->3, 0->1->2->3
_PATHS = ([3], [0, 4], [1, 5], [0, 2, 5])
_PATH_OFFSET = {1: 0, 2: 4, 3: 4 + 16}  # codes over the 4 non-zero ops, by path length
_N_PATH_CODES = 4 + 16 + 64


def _live_edges(ops: Sequence[str]) -> list[bool]:
    """Which edges lie on some input-to-output path whose every edge is not ``none``: the
    others feed a node the input never reaches, or leave one that never reaches the output."""
    on = [op != "none" for op in ops]
    ends = [(int(e[-1]), int(e[0])) for e in EDGES]  # (from, to), in topological order
    reached = [True, False, False, False]
    for (src, dst), ok in zip(ends, on):
        reached[dst] |= ok and reached[src]
    reaches = [False, False, False, True]
    for (src, dst), ok in reversed(list(zip(ends, on))):
        reaches[src] |= ok and reaches[dst]
    return [ok and reached[src] and reaches[dst] for (src, dst), ok in zip(ends, on)]


def arch_str(ops: Sequence[str]) -> str:
    """NB201's string form: ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``."""
    a = ops
    return f"|{a[0]}~0|+|{a[1]}~0|{a[2]}~1|+|{a[3]}~0|{a[4]}~1|{a[5]}~2|"


def parse_arch_str(s: str) -> tuple[str, ...]:
    return tuple(tok.split("~")[0] for node in s.split("+") for tok in node.strip("|").split("|"))


@register_space
class NB201Space(TabularSpace):
    name = "nb201"
    version = "1"

    @classmethod
    def config_options(cls) -> dict[str, ConfigOption]:
        return {"dataset": ConfigOption("dataset", "cifar10", tuple(_DATASET_COLUMNS),
                                        "which NAS-Bench-201 test accuracy is `accuracy`")}

    def choices(self) -> list[Choice]:
        return [Choice(e, OPS, f"operation on the cell edge from node {e[-1]} to node {e[0]}") for e in EDGES]

    def metrics(self) -> dict[str, MetricInfo]:
        return {
            "accuracy": MetricInfo("accuracy", "%", "maximize", (),
                                   f"NATS-Bench test accuracy on {self.config['dataset']} after 200 epochs",
                                   of_function=True),
            "latency_ms": MetricInfo("latency_ms", "ms", "minimize",
                                     HELP_DEVICES + tuple(NNMETER_DEVICES) + PROFILED_DEVICES,
                                     "measured latency (HELP: 27 devices; nn-Meter: 4 devices, 2,000 archs; "
                                     "cpu-eager, cpu-compile, cpu-ort: profiled on this machine during the job)"),
        }

    # -- architectures -------------------------------------------------------------
    def sample(self, suggest: Suggest) -> Architecture:
        return self._arch({e: suggest.suggest_categorical(e, OPS) for e in EDGES})

    def from_params(self, params: Mapping[str, Any]) -> Architecture:
        extra = sorted(set(params) - set(EDGES))
        if extra:
            raise InvalidArchitectureError(f"nb201: unknown key {extra[0]!r}; keys are {', '.join(EDGES)}")
        for e in EDGES:
            if e not in params:
                raise InvalidArchitectureError(f"nb201: missing edge {e!r}; every edge of {', '.join(EDGES)} needs an op")
            if not isinstance(params[e], str) or params[e] not in _OP_INDEX:
                raise InvalidArchitectureError(f"nb201: edge {e!r} has op {params[e]!r}; valid: {', '.join(OPS)}")
        return self._arch({e: params[e] for e in EDGES})

    def from_index(self, index: int) -> Architecture:
        return self.enumerate()[index]

    def canonical(self, arch: Architecture) -> Architecture:
        ops = [arch.params[e] for e in EDGES]
        live = _live_edges(ops)
        if all(ok or op == "none" for ok, op in zip(live, ops)):
            return arch
        return self._arch({e: op if ok else "none" for e, op, ok in zip(EDGES, ops, live)})

    def op_indices(self, archs: Sequence[Architecture]) -> np.ndarray:
        return np.array([[_OP_INDEX[a.params[e]] for e in EDGES] for a in archs], dtype=np.int64).reshape(-1, 6)

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """35 + 85 columns: one-hot op per edge (30); the count of each op over the cell (5);
        the path encoding of BANANAS (84: which op sequences connect input to output); and
        whether any such path exists (1).

        The extra columns matter to tree predictors with a few dozen labels: latency is close
        to a sum over ops (the counts), and a cell with no input-output path trains to chance
        accuracy whatever its other edges hold (the paths), which one-hot columns hide.
        """
        idx = self.op_indices(archs)
        n_onehot = len(EDGES) * len(OPS)
        out = np.zeros((len(idx), n_onehot + len(OPS) + _N_PATH_CODES + 1), dtype=np.float32)
        rows = np.repeat(np.arange(len(idx)), len(EDGES))
        out[rows, (np.arange(len(EDGES)) * len(OPS) + idx).ravel()] = 1.0
        out[:, n_onehot:n_onehot + len(OPS)] = out[:, :n_onehot].reshape(len(idx), len(EDGES), len(OPS)).sum(axis=1)
        base = n_onehot + len(OPS)
        for path in _PATHS:
            ops = idx[:, path]  # (n, len(path)); 0 is "none"
            live = np.all(ops > 0, axis=1)
            code = np.zeros(len(idx), dtype=np.int64)
            for j in range(len(path)):
                code = code * 4 + (ops[:, j] - 1)
            col = base + _PATH_OFFSET[len(path)] + code
            out[np.flatnonzero(live), col[live]] = 1.0
        out[:, -1] = out[:, base:base + _N_PATH_CODES].any(axis=1)
        return out

    def graph(self, arch: Architecture):
        import networkx as nx

        g = nx.DiGraph(space=self.name, arch_id=arch.arch_id)
        for node in range(4):
            g.add_node(f"n{node}", op="input" if node == 0 else ("output" if node == 3 else "add"))
        for e in EDGES:
            dst, src = int(e[0]), int(e[-1])
            op = arch.params[e]
            if op == "none":  # a zero edge carries nothing
                continue
            g.add_node(e, op=op)
            g.add_edge(f"n{src}", e)
            g.add_edge(e, f"n{dst}")
        return g

    # -- the network -----------------------------------------------------------------
    def materialize(self, arch: Architecture, parent: Any = None, *, channels: int = 16, cells: int = 5):
        """NB201's network for ``arch``, freshly initialised (the benchmark ships no weights).

        ``channels`` and ``cells`` shrink it (NB201 trains ``16, 5``), e.g. for cheap proxies.
        """
        from ._nb201_net import NB201Network  # lazy: torch

        self.validate(arch)
        if parent is not None:
            raise InvalidArchitectureError("nb201: no parent network to inherit from (the table ships no weights)")
        return NB201Network(arch.params, _NUM_CLASSES[self.config["dataset"]], channels=channels, cells=cells)

    def example_inputs(self, arch: Architecture, batch: int = 1):
        import torch

        side = 16 if self.config["dataset"] == "ImageNet16-120" else 32
        return (torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0)),)

    # -- the tables ----------------------------------------------------------------
    def _table(self) -> dict[str, Any]:
        cache = self._cache.data
        if "table" not in cache:
            path = data_file("nb201-accuracy", "nats_bench.csv")
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            archs = [self._arch(dict(zip(EDGES, parse_arch_str(r["ArchitectureString"])))) for r in rows]
            acc = np.array([float(r[_DATASET_COLUMNS[self.config["dataset"]]]) for r in rows])
            cache["table"] = {"archs": archs, "index": {a.arch_id: i for i, a in enumerate(archs)},
                              "columns": {"accuracy": acc}}
        return cache["table"]

    def enumerate(self) -> list[Architecture]:
        return list(self._table()["archs"])

    def index_of(self, arch: Architecture) -> int:
        try:
            return self._table()["index"][arch.arch_id]
        except KeyError:
            self.validate(arch)
            raise InvalidArchitectureError(f"nb201: {arch!r} is not in the NAS-Bench-201 table") from None

    def metric_array(self, key: str) -> np.ndarray:
        columns = self._table()["columns"]
        if key not in columns:
            name, _, device = key.partition("@")
            key = self.resolve_metric(name, device or None)  # raises with the valid choices
            if key not in columns:
                columns[key] = self._load_latency(key.partition("@")[2])
        return columns[key]

    @staticmethod
    def _load_latency(device: str) -> np.ndarray:
        if device in PROFILED_DEVICES:  # measured by the job, never in the table
            return np.full(N_ARCHS, np.nan)
        if device in NNMETER_DEVICES:
            out = np.full(N_ARCHS, np.nan)
            path = data_file("nnmeter-nb201-latency", NNMETER_DEVICES[device], "nasbench201-log.csv")
            with open(path, newline="") as f:
                for row in csv.reader(f):
                    out[int(row[1].rsplit("_", 1)[1])] = float(row[2])
            return out
        if device in HELP_DEVICES:
            import torch  # lazy: the tables are torch pickles of plain lists

            path = data_file("help-nb201-fbnet-latency", "nasbench201", "latency", f"{device}.pt")
            values = np.asarray(torch.load(path, weights_only=False), dtype=np.float64)
            if values.shape != (N_ARCHS,):
                raise UnknownMetricError("objective.device", device, f"a table of {N_ARCHS} values (got {values.shape})")
            return values
        raise UnknownMetricError("objective.device", device, ", ".join(HELP_DEVICES + tuple(NNMETER_DEVICES)))
