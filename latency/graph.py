"""The operator graph of a network as it runs: ``trace(module, inputs) -> OpGraph``.

Tracing records every torch function call of one real forward (``TorchFunctionMode``) with
its input and output shapes and which earlier op produced each input. That is the IR the
latency model decomposes into kernels (nn-Meter's "model graph"). ``build_op`` turns a node
back into a standalone module, which is how kernels and fusion pairs are profiled alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["OpNode", "OpGraph", "trace", "build_ops", "CANONICAL"]

# torch function name -> canonical op; anything else keeps its own name
CANONICAL = {
    "conv2d": "conv", "conv1d": "conv", "batch_norm": "bn", "relu": "relu", "relu_": "relu", "add": "add",
    "__add__": "add", "__radd__": "add", "__iadd__": "add", "avg_pool2d": "avgpool", "max_pool2d": "maxpool",
    "adaptive_avg_pool2d": "gap", "linear": "linear", "flatten": "view", "view": "view", "reshape": "view",
    "mul": "mul", "__mul__": "mul", "__rmul__": "mul", "zeros_like": "zeros", "layer_norm": "layernorm",
    "gelu": "gelu", "silu": "silu", "softmax": "softmax", "matmul": "matmul", "__matmul__": "matmul",
    "pixel_shuffle": "pixelshuffle", "group_norm": "groupnorm", "sigmoid": "sigmoid", "cat": "concat",
    "interpolate": "upsample", "scaled_dot_product_attention": "sdpa", "embedding": "embedding",
}
# calls that move no data and launch nothing worth timing
_IGNORED = {"dim", "size", "_set_grad_enabled", "__get__", "__len__", "__bool__", "__index__", "numel", "is_floating_point",
            "__getitem__", "shape", "dtype", "device", "contiguous", "detach"}


@dataclass(frozen=True)
class OpNode:
    """One op of a traced forward. ``inputs`` are producer ids (``-1``: a graph input or a constant)."""

    id: int
    op: str
    inputs: tuple[int, ...]
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    flops: float = 0.0
    bytes: float = 0.0  # float32 bytes read and written, weights included

    @property
    def attr(self) -> dict[str, Any]:
        return dict(self.attrs)


@dataclass(frozen=True)
class OpGraph:
    """The ops of one forward in execution order; ``outputs`` are the ids whose results leave the network."""

    nodes: tuple[OpNode, ...]
    outputs: tuple[int, ...]
    input_shapes: tuple[tuple[int, ...], ...] = field(default=())

    @property
    def flops(self) -> float:
        return float(sum(n.flops for n in self.nodes))

    @property
    def bytes(self) -> float:
        return float(sum(n.bytes for n in self.nodes))

    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                if i >= 0:
                    out[i].append(n.id)
        return out

    def live(self) -> set[int]:
        """Ids of ops whose result reaches an output (a compiler drops the rest)."""
        by_id = {n.id: n for n in self.nodes}
        seen, stack = set(), list(self.outputs)
        while stack:
            i = stack.pop()
            if i in seen or i < 0:
                continue
            seen.add(i)
            stack.extend(by_id[i].inputs)
        return seen


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _cost(op: str, data: list[tuple[int, ...]], weights: list[tuple[int, ...]], out: tuple[int, ...], args: tuple,
          kwargs: dict) -> tuple[float, float, dict[str, Any]]:
    """FLOPs (multiply-adds count 2), float32 bytes, and the attributes that shape a kernel's latency."""
    numel = lambda s: math.prod(s) if s else 1  # noqa: E731
    nbytes = 4.0 * (sum(numel(s) for s in data) + sum(numel(s) for s in weights) + numel(out))
    attrs: dict[str, Any] = {}
    flops = float(numel(out))
    if op == "conv" and weights:
        w = weights[0]
        groups = int(args[6] if len(args) > 6 else kwargs.get("groups", 1))
        stride = args[3] if len(args) > 3 else kwargs.get("stride", 1)
        stride = int(stride[0] if isinstance(stride, (tuple, list)) else stride)
        attrs = {"cin": data[0][1], "cout": w[0], "k": w[-1], "stride": stride, "groups": groups,
                 "bias": len(weights) > 1}
        flops = 2.0 * numel(out) * numel(w[1:])
    elif op == "linear" and weights:
        w = weights[0]
        attrs = {"cin": w[1], "cout": w[0], "bias": len(weights) > 1}
        flops = 2.0 * numel(out) * w[1]
    elif op == "matmul" and len(data) == 2:
        flops = 2.0 * numel(out) * data[0][-1]
    elif op in ("avgpool", "maxpool"):
        k = args[1] if len(args) > 1 else kwargs.get("kernel_size", 1)
        k = int(k[0] if isinstance(k, (tuple, list)) else k)
        s = args[2] if len(args) > 2 and args[2] is not None else kwargs.get("stride") or k
        s = int(s[0] if isinstance(s, (tuple, list)) else s)
        attrs = {"k": k, "stride": s}
        flops = float(numel(out) * k * k)
    elif op == "bn":
        flops = 2.0 * numel(out)
    if len(out) >= 2 and "cout" not in attrs:
        attrs["cout"] = out[1]
    return flops, nbytes, attrs


def trace(module: Any, inputs: Sequence[Any]) -> OpGraph:
    """Run one forward of ``module`` on ``inputs`` and record its ops (real tensors, no grad)."""
    import torch
    from torch.overrides import TorchFunctionMode

    inputs = tuple(inputs)
    producer: dict[int, int] = {id(x): -1 for x in inputs}
    keep: list[Any] = list(inputs)  # holds every traced tensor so ids are not reused during the trace
    nodes: list[OpNode] = []

    def tensors(obj: Any) -> list[Any]:
        if isinstance(obj, torch.Tensor):
            return [obj]
        if isinstance(obj, (list, tuple)):
            return [t for o in obj for t in tensors(o)]
        return []

    def is_data(t: Any) -> bool:
        # activations: produced by an op or fed in; weights and norm buffers are not data edges
        return id(t) in producer or (not isinstance(t, torch.nn.Parameter) and t.dim() >= 2)

    class _Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", str(func))
            outs = tensors(out)
            if name in _IGNORED or not outs:
                return out
            ins = tensors(list(args) + list(kwargs.values()))
            data = [t for t in ins if is_data(t)]
            weights = [_shape(t) for t in ins if not is_data(t)]
            op = CANONICAL.get(name, name)
            flops, nbytes, attrs = _cost(op, [_shape(t) for t in data], weights, _shape(outs[0]), args, kwargs)
            node = OpNode(len(nodes), op, tuple(producer.get(id(t), -1) for t in data),
                          tuple(_shape(t) for t in data), _shape(outs[0]), tuple(sorted(attrs.items())), flops, nbytes)
            nodes.append(node)
            for t in outs:
                producer[id(t)] = node.id
                keep.append(t)
            return out

    if hasattr(module, "eval"):
        module.eval()
    with torch.inference_mode(), _Recorder():
        result = module(*inputs)
    outputs = tuple(producer.get(id(t), -1) for t in tensors(result))
    # views are free: fold them into their producer so kernels see the op that did the work
    return _fold_views(OpGraph(tuple(nodes), outputs, tuple(_shape(x) for x in inputs)))


def _fold_views(g: OpGraph) -> OpGraph:
    alias: dict[int, int] = {}
    kept: list[OpNode] = []
    for n in g.nodes:
        srcs = tuple(alias.get(i, i) for i in n.inputs)
        if n.op == "view" and len(srcs) == 1:
            alias[n.id] = srcs[0]
            continue
        kept.append(OpNode(n.id, n.op, srcs, n.in_shapes, n.out_shape, n.attrs, n.flops, n.bytes))
    outputs = tuple(alias.get(i, i) for i in g.outputs)
    return OpGraph(tuple(kept), outputs, g.input_shapes)


# -- rebuilding ops as standalone modules (for profiling kernels and fusion pairs) ----------
def _make_op(node: OpNode):
    """A module computing ``node`` alone; its forward takes one tensor per data input."""
    import torch
    from torch import nn

    a = node.attr
    if node.op == "conv":
        cin = node.in_shapes[0][1]
        return nn.Conv2d(cin, a["cout"], a["k"], a["stride"], a["k"] // 2, groups=a.get("groups", 1),
                         bias=len(node.in_shapes) > 2)
    if node.op == "bn":
        return nn.BatchNorm2d(node.out_shape[1])
    if node.op == "linear":  # views were folded away: flatten what the linear reads
        lin = nn.Linear(a["cin"], a["cout"], bias=a.get("bias", True))
        return _Fn(lambda x: lin(x.flatten(1) if x.dim() > 2 and x.shape[-1] != a["cin"] else x), lin)
    if node.op == "avgpool":
        return nn.AvgPool2d(a["k"], a["stride"], a["k"] // 2, count_include_pad=False)
    if node.op == "maxpool":
        return nn.MaxPool2d(a["k"], a["stride"], a["k"] // 2)
    if node.op == "gap":
        return nn.AdaptiveAvgPool2d(1)
    simple = {"relu": torch.relu, "add": lambda x, *r: x + (r[0] if r else 0.0), "mul": lambda x, *r: x.mul(r[0] if r else 0.0),
              "zeros": torch.zeros_like, "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
              "sigmoid": torch.sigmoid, "softmax": lambda x: x.softmax(-1), "layernorm": lambda x: torch.nn.functional.
              layer_norm(x, x.shape[-1:]), "matmul": torch.matmul}
    if node.op in simple:
        return _Fn(simple[node.op])
    raise NotImplementedError(f"op {node.op!r} cannot be rebuilt alone")


class _Fn:  # a callable wrapped as a Module, built lazily (keeps graph.py import-light)
    def __new__(cls, fn, owned=None):
        from torch import nn

        class Fn(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.fn = fn
                self.owned = owned  # registers the wrapped module's weights (export needs them)

            def forward(self, *xs):
                return self.fn(*xs)

        return Fn()


def build_ops(nodes: Sequence[OpNode]):
    """``(module, inputs)`` running ``nodes`` alone, as a chain: each node takes the previous
    node's result where the traced graph did, and a fresh random tensor for every other input."""
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(0)
    inputs: list[Any] = []
    specs: list[list[int | None]] = []  # per node, per data input: None = the previous result, else an input index
    for k, n in enumerate(nodes):
        spec: list[int | None] = []
        for src, shape in zip(n.inputs, n.in_shapes):
            if k > 0 and src == nodes[k - 1].id and None not in spec:
                spec.append(None)
            else:
                spec.append(len(inputs))
                inputs.append(torch.randn(shape, generator=gen))
        specs.append(spec)

    class Chain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ops = nn.ModuleList(_make_op(n) for n in nodes)

        def forward(self, *xs):
            h = None
            for op, spec in zip(self.ops, specs):
                h = op(*[h if s is None else xs[s] for s in spec])
            return h

    return Chain().eval(), tuple(inputs)
