"""Pareto fronts and hypervolume, exact, for any number of objectives (fast paths for 2-D)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["to_minimization", "pareto_mask", "pareto_front", "nondominated_rank", "hypervolume",
           "normalized_hypervolume"]


def to_minimization(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Flip the sign of maximised objectives so every column is minimised."""
    v = np.asarray(values, dtype=np.float64).reshape(len(values), len(directions))
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return v * sign


def pareto_mask(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of a minimisation problem (duplicates all kept)."""
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if p.shape[1] == 2:
        # sweep in x order: a point survives if its y beats every y before it (or it
        # duplicates the point just kept); vectorised because screening calls this a lot
        order = np.lexsort((p[:, 1], p[:, 0]))
        xs, ys = p[order, 0], p[order, 1]
        prev_min = np.concatenate(([np.inf], np.minimum.accumulate(ys)[:-1]))
        keep = ys < prev_min
        dup = np.flatnonzero((xs[1:] == xs[:-1]) & (ys[1:] == ys[:-1])) + 1
        for i in dup:  # rare: exact duplicates of a kept point are kept too
            keep[i] = keep[i - 1]
        mask = np.zeros(n, dtype=bool)
        mask[order] = keep
        return mask
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if mask[i]:
            dominated = np.all(p[i] <= p, axis=1) & np.any(p[i] < p, axis=1)
            mask &= ~dominated
    return mask


def pareto_front(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Indices of the Pareto-optimal rows of ``values`` under ``directions``."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(pareto_mask(to_minimization(values, directions)))


def nondominated_rank(points: np.ndarray, max_rank: int | None = None) -> np.ndarray:
    """Front number of each row (0 = non-dominated), by peeling; rows past ``max_rank`` get ``max_rank``."""
    p = np.asarray(points, dtype=np.float64)
    rank = np.full(len(p), -1)
    left = np.arange(len(p))
    r = 0
    while len(left) and (max_rank is None or r < max_rank):
        m = pareto_mask(p[left])
        rank[left[m]] = r
        left = left[~m]
        r += 1
    rank[rank < 0] = r
    return rank


def _hv_min(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by ``points`` (minimisation) and bounded by ``ref``."""
    p = points[np.all(points < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[pareto_mask(p)]
    m = p.shape[1]
    if m == 1:
        return float(ref[0] - p[:, 0].min())
    if m == 2:
        p = p[np.argsort(p[:, 0])]
        ys = np.minimum.accumulate(p[:, 1])
        xs_next = np.append(p[1:, 0], ref[0])
        return float(np.sum((xs_next - p[:, 0]) * (ref[1] - ys)))
    # slice along the last objective: exact, fine for the front sizes a search produces
    p = p[np.argsort(p[:, -1])]
    total = 0.0
    for i in range(len(p)):
        upper = p[i + 1, -1] if i + 1 < len(p) else ref[-1]
        depth = upper - p[i, -1]
        if depth > 0:
            total += depth * _hv_min(p[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(values: np.ndarray, ref: Sequence[float], directions: Sequence[str]) -> float:
    """Hypervolume of ``values`` w.r.t. reference point ``ref`` (given in the objectives' own signs)."""
    if len(values) == 0:
        return 0.0
    pts = to_minimization(values, directions)
    r = to_minimization(np.asarray([ref], dtype=np.float64), directions)[0]
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    return _hv_min(pts, r)


def normalized_hypervolume(values: np.ndarray, directions: Sequence[str], lo: np.ndarray, hi: np.ndarray) -> float:
    """Hypervolume after mapping each objective (as minimisation) to [0, 1] by ``lo``/``hi``
    (the objective's range in its own sign), reference point (1, ..., 1)."""
    if len(values) == 0:
        return 0.0
    pts = to_minimization(values, directions)
    a = to_minimization(np.asarray([lo]), directions)[0]
    b = to_minimization(np.asarray([hi]), directions)[0]
    low, high = np.minimum(a, b), np.maximum(a, b)
    span = np.where(high > low, high - low, 1.0)
    norm = (pts - low) / span
    norm = norm[np.all(np.isfinite(norm), axis=1)]
    return _hv_min(norm, np.ones(pts.shape[1]))

