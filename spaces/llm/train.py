"""Training an ``llm-subnet`` parent: next-byte prediction on the standard library's train
split (AdamW, warm-up then cosine decay, gradient clipping), deterministic for a seed."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .data import split_tokens, windows
from .model import Llama

__all__ = ["train_lm", "perplexity", "negative_log_likelihood"]


def train_lm(model: Llama, seed: int, progress: Callable[[int, int, str], None] | None, *, steps: int,
             batch: int = 16, length: int = 256, lr: float = 3e-3) -> dict[str, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = split_tokens("train")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warm = max(1, steps // 20)
    model.train()
    loss_avg = float("nan")
    for step in range(steps):
        scale = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))
        for g in opt.param_groups:
            g["lr"] = lr * max(scale, 0.02)
        starts = rng.integers(0, len(data) - length - 1, batch)
        x = torch.from_numpy(data[starts[:, None] + np.arange(length + 1)[None]].astype(np.int64))
        logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_avg = loss.item() if step == 0 else 0.98 * loss_avg + 0.02 * loss.item()
        if progress is not None and (step % 10 == 0 or step == steps - 1):
            progress(step + 1, steps, f"loss {loss_avg:.3f}")
    model.eval()
    return {"train_loss": round(loss_avg, 4), "test_ppl": round(perplexity(model, windows("test", 32, 256)), 4)}


@torch.no_grad()
def perplexity(model: Llama, wins: torch.Tensor, masks=None, batch: int = 8) -> float:
    """Per-token perplexity of ``model`` (or its subnet ``masks``) on ``(n, length + 1)`` windows
    (per byte for the byte-level parents)."""
    total, count = negative_log_likelihood(model, wins, masks, batch)
    return math.exp(total / count)


@torch.no_grad()
def negative_log_likelihood(model: Llama, wins: torch.Tensor, masks=None, batch: int = 8) -> tuple[float, int]:
    """``(summed next-token NLL in nats, tokens predicted)`` on ``(n, length + 1)`` windows."""
    total, count = 0.0, 0
    for i in range(0, len(wins), batch):
        x = wins[i:i + batch]
        h = model.model.norm(model.hidden(x[:, :-1], masks))
        h, y = h.reshape(-1, h.shape[-1]), x[:, 1:].reshape(-1)
        # the LM head a chunk of tokens at a time: a 50k vocabulary's float32 logits of a whole
        # batch would be the largest tensor of the job
        for j in range(0, len(h), _HEAD_CHUNK):
            logits = model.lm_head(h[j:j + _HEAD_CHUNK]).float()
            total += F.cross_entropy(logits, y[j:j + _HEAD_CHUNK], reduction="sum").item()
        count += y.numel()
    return total, count


_HEAD_CHUNK = 256  # tokens per LM-head product in negative_log_likelihood
