"""Training the ``vit-elastic`` parent (sandwich rule with in-place distillation), BatchNorm
recalibration of subnets, and top-1 evaluation."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import digits_split
from .model import SuperViT, ViTConfig

__all__ = ["train_sandwich", "recalibrate", "top1", "accuracy_and_loss"]


def _shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image moved by up to one pixel in each direction (background fills the gap)."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx = torch.randint(0, 3, (n,), generator=g)
    dy = torch.randint(0, 3, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(8))[:, None, :, None].expand(n, 1, 8, 10)
    out = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + torch.arange(8))[:, None, None, :].expand(n, 1, 8, 8)
    return torch.gather(out, 3, cols)


def train_sandwich(model: SuperViT, seed: int, progress: Callable[[int, int, str], None] | None, *,
                   sample: Callable[[random.Random], ViTConfig], smallest: ViTConfig, epochs: int,
                   lr: float = 3e-3, batch: int = 64) -> dict[str, float]:
    """Train every subnet at once: each step, the largest network on the labels, then the
    smallest and two random subnets on the largest one's soft predictions (the sandwich
    rule with in-place distillation, as in BigNAS / EfficientFormerV2's supernet)."""
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    x, y, x_test, y_test = digits_split()
    steps_per_epoch = math.ceil(len(x) / batch)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    model.train()
    step = 0
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            xb, yb = _shift(x[idx], g), y[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            F.cross_entropy(out, yb, label_smoothing=0.1).backward()
            soft = out.detach().softmax(dim=-1)
            for sub in (smallest, sample(rng), sample(rng)):
                F.kl_div(model(xb, sub).log_softmax(dim=-1), soft, reduction="batchmean").backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            if progress:
                progress(step, total, f"epoch {epoch + 1}/{epochs}")
    calibrate_parent(model, x)
    model.eval()
    small = recalibrate(model.extract(smallest), x)
    return {"top1_largest": top1(model, x_test, y_test), "top1_smallest": top1(small, x_test, y_test),
            "epochs": epochs}


@torch.no_grad()
def calibrate_parent(model: SuperViT, x: torch.Tensor, batch: int = 256) -> None:
    """The largest network's BatchNorm statistics, averaged over the training images."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    model.train()
    for k, i in enumerate(range(0, len(x), batch)):
        model.bn_momentum = 1.0 / (k + 1)  # a cumulative average over the batches
        model(x[i:i + batch])
    model.bn_momentum = 0.0
    model.eval()


@torch.no_grad()
def recalibrate(net: nn.Module, x: torch.Tensor, batch: int = 256) -> nn.Module:
    """Re-estimate a subnet's BatchNorm statistics on ``x`` (Once-for-All): a subnet's
    activations have other statistics than the parent's, whose slices it inherits."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    net.train()
    for i in range(0, len(x), batch):
        net(x[i:i + batch])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return net.eval()


def top1(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy in percent."""
    return accuracy_and_loss(net, x, y)[0]


@torch.no_grad()
def accuracy_and_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> tuple[float, float]:
    """Top-1 accuracy in percent and the mean cross-entropy, in one pass."""
    net.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch):
        out = net(x[i:i + batch])
        correct += int((out.argmax(-1) == y[i:i + batch]).sum())
        loss += float(F.cross_entropy(out, y[i:i + batch], reduction="sum"))
    return 100.0 * correct / len(x), loss / len(x)
