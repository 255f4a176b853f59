"""DDPM on scikit-learn's digits (real 8x8 scans, upsampled to 16x16): training the
``unet-blocks`` parent with robust block dropping, and the fixed evaluation triples.

Robust training (SnapFusion): each step trains the full U-Net on the denoising loss, then
the smallest subnet and two random ones (random widths, each block dropped with
probability 1/2) on the denoising loss plus distillation to the full network's prediction,
so that removing blocks or narrowing stages degrades the output gracefully.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .model import TIMESTEPS, UNet, UNetConfig

__all__ = ["digit_images", "alphas_cumprod", "noisy", "train_robust", "eval_triples", "N_TRIPLES"]

N_TRIPLES = 256  # fixed (x_t, t) pairs every subnet is scored on (LAPTOP-Diff's output loss)


@lru_cache(maxsize=4)
def digit_images(side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, test)`` digit images ``(n, 1, side, side)`` in [-1, 1] (the ViT's fixed split)."""
    from ..vit.data import digits_split

    x_tr, _, x_te, _ = digits_split()
    up = lambda x: F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False).clamp(-1, 1)  # noqa: E731
    return up(x_tr), up(x_te)


@lru_cache(maxsize=1)
def alphas_cumprod() -> torch.Tensor:
    return torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, TIMESTEPS, dtype=torch.float64), 0).float()


def noisy(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod()[t][:, None, None, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def train_robust(model: UNet, seed: int, progress: Callable[[int, int, str], None] | None, *,
                 sample: Callable[[random.Random], UNetConfig], smallest: UNetConfig, steps: int,
                 batch: int = 32, lr: float = 2e-3) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    x_train, _ = digit_images(model.config.image_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05 if steps >= 60 else 0.3)
    model.train()
    for step in range(steps):
        x0 = x_train[torch.randint(len(x_train), (batch,), generator=g)]
        t = torch.randint(TIMESTEPS, (batch,), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = noisy(x0, t, eps)
        opt.zero_grad(set_to_none=True)
        full = model.run(xt, t.float(), None)
        F.mse_loss(full, eps).backward()
        teacher = full.detach()
        for sub in (smallest, sample(rng), sample(rng)):
            out = model.run(xt, t.float(), sub)
            (F.mse_loss(out, eps) + F.mse_loss(out, teacher)).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress:
            progress(step + 1, steps, "robust training")
    model.eval()
    xt, t, eps = eval_triples(model.config.image_size)
    with torch.no_grad():
        return {"steps": steps, "denoise_loss_largest": float(F.mse_loss(model(xt, t), eps)),
                "denoise_loss_smallest": float(F.mse_loss(model.run(xt, t, smallest), eps))}


@lru_cache(maxsize=4)
def eval_triples(side: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, eps)``: 256 held-out digits noised at timesteps spread evenly over the
    schedule, with noise from seed 0: the same for every subnet on every machine."""
    _, x_test = digit_images(side)
    g = torch.Generator().manual_seed(0)
    x0 = x_test[:N_TRIPLES]
    t = torch.linspace(0, TIMESTEPS - 1, N_TRIPLES).round().long()
    eps = torch.randn(x0.shape, generator=g)
    return noisy(x0, t, eps), t.float(), eps
