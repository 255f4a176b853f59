"""Prefix slicing, the weight sharing of the convolutional spaces (``sr-adaptive``, ``unet-blocks``).

A parent runs as any of its subnets by using the first ``n`` output channels of each layer
and as many input channels as the incoming tensor has (Once-for-All). A subnet's dense
network keeps the parent's module names, so its weights are the leading slices of the
parent's tensors of the same name (:func:`sliced_state_dict`). When a layer is used at full
size the helpers call the module itself, so a dense network traces to plain ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv", "group_norm", "linear", "sliced_state_dict", "GROUP_CHANNELS"]

GROUP_CHANNELS = 8  # GroupNorm groups hold 8 channels, so a slice to a multiple of 8 keeps whole groups


def conv(x: torch.Tensor, layer: nn.Conv2d, cout: int | None = None) -> torch.Tensor:
    """``layer`` on ``x``, using as many input channels as ``x`` has and the first ``cout``
    outputs (dense convolutions only: a grouped one would need its groups sliced too)."""
    w = layer.weight
    assert layer.groups == 1 and layer.dilation == (1, 1), "prefix slicing covers dense convolutions"
    cin = x.shape[1]
    if (cout is None or cout == w.shape[0]) and cin == w.shape[1]:
        return layer(x)
    cout = w.shape[0] if cout is None else cout
    bias = None if layer.bias is None else layer.bias[:cout]
    return F.conv2d(x, w[:cout, :cin], bias, layer.stride, layer.padding)


def linear(x: torch.Tensor, layer: nn.Linear, cout: int) -> torch.Tensor:
    if cout == layer.out_features and x.shape[-1] == layer.in_features:
        return layer(x)
    return F.linear(x, layer.weight[:cout, :x.shape[-1]], layer.bias[:cout])


def group_norm(x: torch.Tensor, layer: nn.GroupNorm) -> torch.Tensor:
    c = x.shape[1]
    if c == layer.num_channels:
        return layer(x)
    return F.group_norm(x, c // GROUP_CHANNELS, layer.weight[:c], layer.bias[:c], layer.eps)


@torch.no_grad()
def sliced_state_dict(parent: nn.Module, dense: nn.Module) -> dict[str, torch.Tensor]:
    """The dense network's state dict cut from the parent's tensors of the same names.

    Raises ``ValueError`` naming the first tensor the parent lacks or is too small for:
    a parent of another space or size.
    """
    src = parent.state_dict()
    out = {}
    for name, t in dense.state_dict().items():
        s = src.get(name)
        if s is None:
            raise ValueError(f"the parent has no tensor {name!r}")
        if s.dim() != t.dim() or any(a > b for a, b in zip(t.shape, s.shape)):
            raise ValueError(f"{name}: the subnet needs shape {tuple(t.shape)}, the parent has {tuple(s.shape)}")
        out[name] = s[tuple(slice(0, n) for n in t.shape)].clone()
    return out
