"""Training the ``sr-adaptive`` parent: sandwich training of every subnet on random patches
of the training photos, alternating the x2 and x4 tails, and evaluation on the held-out set."""

from __future__ import annotations

import random
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .data import downscale, psnr, ssim, test_set, train_photos
from .model import SCALES, SRConfig, SRNet

__all__ = ["train_sandwich", "evaluate_sr", "bicubic_scores"]

PATCH = 64  # high-resolution patch side: 32x32 low-resolution inputs at x2, 16x16 at x4


def _patches(g: torch.Generator, n: int) -> torch.Tensor:
    """``n`` random 64x64 crops of random training photos, randomly flipped and rotated."""
    photos = train_photos()
    out = []
    for _ in range(n):
        p = photos[int(torch.randint(len(photos), (1,), generator=g))]
        top = int(torch.randint(p.shape[1] - PATCH + 1, (1,), generator=g))
        left = int(torch.randint(p.shape[2] - PATCH + 1, (1,), generator=g))
        crop = p[:, top:top + PATCH, left:left + PATCH]
        k = int(torch.randint(8, (1,), generator=g))
        crop = torch.rot90(crop, k % 4, dims=(1, 2))
        out.append(crop.flip(2) if k >= 4 else crop)
    return torch.stack(out)


def train_sandwich(model: SRNet, seed: int, progress: Callable[[int, int, str], None] | None, *,
                   sample: Callable[[random.Random], SRConfig], smallest: SRConfig, steps: int,
                   batch: int = 16, lr: float = 2e-3) -> dict[str, float]:
    """Each step trains the largest network, the smallest and two random subnets on one batch
    (L1 to the photo), at x2 on even steps and x4 on odd ones."""
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05 if steps >= 60 else 0.3)
    model.train()
    for step in range(steps):
        scale = SCALES[step % len(SCALES)]
        hr = _patches(g, batch)
        lr_img = downscale(hr, scale)
        opt.zero_grad(set_to_none=True)
        for sub in (None, smallest, sample(rng), sample(rng)):
            F.l1_loss(model.run(lr_img, sub, scale), hr).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress:
            progress(step + 1, steps, f"x{scale}")
    model.eval()
    out: dict[str, float] = {"steps": steps}
    for scale in SCALES:
        out[f"psnr_x{scale}_largest"] = evaluate_sr(model, None, scale)[0]
        out[f"psnr_x{scale}_smallest"] = evaluate_sr(model, smallest, scale)[0]
        out[f"psnr_x{scale}_bicubic"] = bicubic_scores(scale)[0]
    return out


@torch.no_grad()
def evaluate_sr(model: nn.Module, sub: SRConfig | None, scale: int) -> tuple[float, float]:
    """(PSNR dB, SSIM) of a network (a dense one, or ``model`` run as ``sub``) on the held-out set."""
    lr_img, hr = test_set(scale)
    model.eval()
    out = model.run(lr_img, sub, scale) if isinstance(model, SRNet) else model(lr_img)
    return psnr(out, hr, scale), ssim(out, hr, scale)


def bicubic_scores(scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) of plain bicubic upsampling: the reference every SR network must beat."""
    lr_img, hr = test_set(scale)
    up = F.interpolate(lr_img, scale_factor=scale, mode="bicubic", align_corners=False)
    return psnr(up, hr, scale), ssim(up, hr, scale)
