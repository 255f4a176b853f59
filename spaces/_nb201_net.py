"""The NAS-Bench-201 network in torch: what ``NB201Space.materialize`` builds.

The topology of NAS-Bench-201's "tiny network" (Dong & Yang, 2020): a 3x3 stem, three
stages of ``cells`` cells at ``C``, ``2C``, ``4C`` channels joined by residual reduction
blocks, then BN-ReLU, global pooling and a linear classifier. A cell is a 4-node DAG;
node ``j`` sums ``op(node_i)`` over its incoming edges ``j<-i``. NB201 trains it with
``C = 16, cells = 5``; smaller settings keep zero-cost proxies cheap.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ["NB201Network"]


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _ReLUConvBN(c, c, 1, 1)
    if name == "nor_conv_3x3":
        return _ReLUConvBN(c, c, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"op: got {name!r}; valid: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3")


class _Cell(nn.Module):
    def __init__(self, ops: Mapping[str, str], c: int) -> None:
        super().__init__()
        self.edges = list(ops)  # "j<-i"
        self.ops = nn.ModuleList(_op(ops[e], c) for e in self.edges)
        self._live = [ops[e] != "none" for e in self.edges]  # zero edges are skipped, not summed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in (1, 2, 3):
            terms = [op(nodes[int(e[-1])]) for e, op, live in zip(self.edges, self.ops, self._live)
                     if live and int(e[0]) == j]
            nodes.append(sum(terms) if terms else torch.zeros_like(x))
        return nodes[3]


class _Reduction(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = _ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = _ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """``NB201Network(ops, num_classes, channels=16, cells=5)``; ``ops`` maps edge to op name."""

    def __init__(self, ops: Mapping[str, str], num_classes: int, channels: int = 16, cells: int = 5) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        blocks: list[nn.Module] = []
        for stage in range(3):
            if stage:
                blocks.append(_Reduction(c, 2 * c))
                c *= 2
            blocks += [_Cell(ops, c) for _ in range(cells)]
        self.cells = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.cells(self.stem(x))))
        return self.classifier(x.flatten(1))
