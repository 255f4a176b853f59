"""Ranking metrics for predictors: how well a predicted score orders architectures.

Every function takes ``(y_true, y_pred)`` with *higher = better* for both (flip the sign of a
minimised metric such as latency or perplexity before calling).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["kendall_tau", "spearman", "ndcg_at_k", "top_k_regret"]


def _check(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_pred: got {p.shape[0]} values; y_true has {t.shape[0]}, they must match")
    if len(t) < 2:
        raise ValueError(f"y_true: got {len(t)} value(s); ranking metrics need at least 2")
    for name, a in (("y_true", t), ("y_pred", p)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains NaN or infinite values; every value must be finite")
    return t, p


def kendall_tau(y_true, y_pred) -> float:
    """Kendall's tau-b between truth and prediction (1 = same order, -1 = reversed)."""
    t, p = _check(y_true, y_pred)
    return float(stats.kendalltau(t, p).statistic)


def spearman(y_true, y_pred) -> float:
    """Spearman's rank correlation between truth and prediction."""
    t, p = _check(y_true, y_pred)
    return float(stats.spearmanr(t, p).statistic)


def ndcg_at_k(y_true, y_pred, k: int = 10) -> float:
    """NDCG@k with relevance = truth min-max scaled to [0, 1] (AceNAS uses graded relevance).

    1.0 when the predicted top k are the true top k in the true order.
    """
    t, p = _check(y_true, y_pred)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: got {k!r}; valid: an integer >= 1")
    k = min(int(k), len(t))
    span = t.max() - t.min()
    rel = (t - t.min()) / span if span > 0 else np.ones_like(t)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    order = np.argsort(-p, kind="stable")[:k]
    ideal = np.sort(rel)[::-1][:k]
    best = float(np.sum((2.0 ** ideal - 1.0) * discount))
    return float(np.sum((2.0 ** rel[order] - 1.0) * discount)) / best if best > 0 else 1.0


def top_k_regret(y_true, y_pred, k: int = 10) -> float:
    """True best minus the true value of the best among the predicted top k (0 is perfect)."""
    t, p = _check(y_true, y_pred)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: got {k!r}; valid: an integer >= 1")
    top = np.argsort(-p, kind="stable")[:min(int(k), len(t))]
    return float(t.max() - t[top].max())
