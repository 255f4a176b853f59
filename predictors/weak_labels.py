"""Weak labels for a space: cheap scores of every architecture, for pretraining rankers.

``weak_labels(space, archs)`` returns a :class:`WeakLabels` table, one column per score, each
as its source defines it (pretraining regresses on every column, so a score's direction does
not matter; NASLib's ``plain`` even falls as accuracy rises). Sources, per space:

- spaces that can ``materialize`` a network: zero-cost proxies computed here on the
  untrained network (``predictors.zero_cost``), over real photos;
- ``nb201``: in addition, the NASLib proxy scores (``naslib-zc-nb201``) where NASLib has
  them (NaN elsewhere; pretraining masks missing entries);
- ``hwgpt-s``: the parameter and FLOP counts of its table.

Proxies over a whole tabular space are computed once (in parallel) and cached on disk under
``NAS_CACHE_DIR`` (default ``~/.cache/nas``), keyed by space, version and settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WeakLabels", "weak_labels", "features", "feature_names", "proxy_table", "proxy_scores", "cache_dir",
           "NB201_PROXY_NET"]

# the network the NB201 proxies are computed on: small enough for 15,625 architectures in
# minutes on two cores; measured against the full-size network on 200 random cells, the
# rank correlation of each proxy with CIFAR-10 accuracy is unchanged (within 0.03)
NB201_PROXY_NET = {"channels": 8, "cells": 1, "batch": 32}
OWN_PROXIES = ("params", "flops", "synflow", "nwot", "jacov")
NASLIB_PROXIES = ("synflow", "nwot", "jacov", "snip", "grad_norm", "fisher", "grasp", "epe_nas", "plain", "l2_norm")
_NASLIB_DATASETS = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}
# NASLib's NB201 encoding (naslib/search_spaces/nasbench201/conversions.py): op indices in
# this order, over edges (i, j) between its nodes 1..4 (our nodes 0..3, edge "j-1<-i-1");
# checked in the tests: NASLib's parameter counts equal those of our networks
_NASLIB_OPS = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
_NASLIB_EDGES = ((1, 2), (1, 3), (1, 4), (2, 3), (2, 4), (3, 4))


@dataclass(frozen=True)
class WeakLabels:
    """``values[i, j]``: score ``names[j]`` of architecture ``i``; NaN where unknown."""

    names: tuple[str, ...]
    values: np.ndarray = field(repr=False)

    def column(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise ValueError(f"name: got {name!r}; valid: {', '.join(self.names)}")
        return self.values[:, self.names.index(name)]


def cache_dir() -> Path:
    return Path(os.environ.get("NAS_CACHE_DIR") or Path.home() / ".cache" / "nas")


# -- own proxies ------------------------------------------------------------------------
def _proxy_settings(space) -> dict[str, Any]:
    net = dict(NB201_PROXY_NET) if space.name == "nb201" else {"batch": 32}
    return {"space": space.name, "version": space.version, "config": space.config, "proxies": OWN_PROXIES,
            "net": net, "seed": 0, "format": 1}


def _score_chunk(space, archs: Sequence[Any], settings: dict[str, Any]) -> np.ndarray:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one process per core does better than threads on these tiny nets
    try:
        return _score_rows(space, archs, settings)
    finally:
        torch.set_num_threads(threads)


def _score_rows(space, archs: Sequence[Any], settings: dict[str, Any]) -> np.ndarray:
    from .zero_cost import compute_proxies, image_batch

    net = dict(settings["net"])
    batch = net.pop("batch")
    side = int(space.example_inputs(archs[0])[0].shape[-1])
    side = min(side, 16) if space.name == "nb201" else side
    x = image_batch(batch, side, seed=settings["seed"])
    out = np.empty((len(archs), len(settings["proxies"])))
    for row, arch in enumerate(archs):
        scores = compute_proxies(lambda: space.materialize(arch, **net), x, settings["proxies"],
                                 seed=settings["seed"])
        out[row] = [scores[n] for n in settings["proxies"]]
    return out


def _score(space, archs: Sequence[Any], settings: dict[str, Any], n_jobs: int | None,
           progress: Callable[[int, int], None] | None) -> np.ndarray:
    n = len(archs)
    chunks = [list(archs[s:s + 250]) for s in range(0, n, 250)]
    jobs = max(1, min(n_jobs or os.cpu_count() or 1, len(chunks)))
    parts: list[np.ndarray] = [np.empty((0, len(settings["proxies"])))] * max(1, len(chunks))
    done = 0
    if jobs == 1:
        for c, chunk in enumerate(chunks):
            parts[c] = _score_chunk(space, chunk, settings)
            done += len(chunk)
            if progress:
                progress(done, n)
    else:
        import multiprocessing as mp
        from concurrent.futures import as_completed

        # spawn, not fork: the parent may hold torch or Ray threads that a fork would copy mid-state
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_score_chunk, space, chunk, settings): c for c, chunk in enumerate(chunks)}
            for fut in as_completed(futures):
                parts[futures[fut]] = fut.result()
                done += len(chunks[futures[fut]])
                if progress:
                    progress(done, n)
    values = np.vstack(parts)
    return np.where(np.isfinite(values), values, np.nan)  # -inf: the proxy saw no signal


def _table_path(space) -> tuple[Path, dict[str, Any]]:
    settings = _proxy_settings(space)
    key = hashlib.blake2b(json.dumps(settings, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()
    return cache_dir() / f"proxies-{space.name}-{key}.npz", settings


def proxy_scores(space, archs: Sequence[Any], *, n_jobs: int | None = 1) -> WeakLabels:
    """Zero-cost proxies of some architectures: read from the space's cached table when it
    exists, computed otherwise (and remembered for the life of the process)."""
    path, settings = _table_path(space)
    if path.exists() and hasattr(space, "index_of"):
        table = proxy_table(space)
        return WeakLabels(table.names, table.values[[space.index_of(a) for a in archs]])
    memo = space._cache.data.setdefault("proxy_memo", {})
    todo = list({a.arch_id: a for a in archs if a.arch_id not in memo}.values())
    if todo:
        for arch, row in zip(todo, _score(space, todo, settings, n_jobs, None)):
            memo[arch.arch_id] = row
    values = np.array([memo[a.arch_id] for a in archs]).reshape(len(archs), len(settings["proxies"]))
    return WeakLabels(tuple(settings["proxies"]), values)


def proxy_table(space, *, n_jobs: int | None = None, progress: Callable[[int, int], None] | None = None,
                use_cache: bool = True) -> WeakLabels:
    """Zero-cost proxies of every architecture of a tabular space, cached on disk."""
    path, settings = _table_path(space)
    memo = space._cache.data
    if use_cache and memo.get("proxy_table_path") == path:
        return memo["proxy_table"]  # read once per process: features() and proxy_scores() ask often
    if use_cache and path.exists():
        with np.load(path) as f:
            table = WeakLabels(tuple(str(n) for n in f["names"]), f["values"])
        memo["proxy_table_path"], memo["proxy_table"] = path, table
        return table
    values = _score(space, space.enumerate(), settings, n_jobs, progress)
    table = WeakLabels(tuple(settings["proxies"]), values)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, names=np.array(table.names), values=table.values)
        os.replace(tmp, path)  # atomic: a killed computation leaves no half-written cache
        memo["proxy_table_path"], memo["proxy_table"] = path, table
    return table


# -- published scores --------------------------------------------------------------------
def _naslib_nb201(space) -> WeakLabels:
    from spaces._data import data_file

    cache = space._cache.data
    if "naslib" not in cache:
        with open(data_file("naslib-zc-nb201", "zc_nasbench201.json")) as f:
            data = json.load(f)[_NASLIB_DATASETS[space.config["dataset"]]]
        values = np.full((len(space.enumerate()), len(NASLIB_PROXIES)), np.nan)
        for key, entry in data.items():
            ops = [int(t) for t in key.strip("()").split(",")]
            arch = space.from_params({f"{j - 1}<-{i - 1}": _NASLIB_OPS[o] for (i, j), o in zip(_NASLIB_EDGES, ops)})
            values[space.index_of(arch)] = [entry[p]["score"] if isinstance(entry.get(p), dict) else np.nan
                                            for p in NASLIB_PROXIES]
        cache["naslib"] = WeakLabels(tuple(f"naslib_{p}" for p in NASLIB_PROXIES),
                                     np.where(np.isfinite(values), values, np.nan))
    return cache["naslib"]


# -- entry point -------------------------------------------------------------------------
def weak_labels(space, archs: Sequence[Any] | None = None, *, canonical: bool = False,
                **proxy_kw: Any) -> WeakLabels:
    """Weak labels of ``archs``, or of the whole tabular space in ``enumerate`` order.

    With ``archs`` and no cached table for the space, only those architectures are scored.
    ``canonical=True``: the scores of each architecture's ``space.canonical`` form, the
    targets that go with ``features`` (which describe canonical forms) in pretraining; by
    default the scores of the architectures as given, as NASLib publishes them.
    """
    if canonical:
        if archs is None and hasattr(space, "index_of"):
            table = weak_labels(space, **proxy_kw)
            return WeakLabels(table.names, table.values[space.canonical_indices()])
        archs = [space.canonical(a) for a in (space.enumerate() if archs is None else archs)]
    if space.name == "hwgpt-s":
        names = ("params", "flops")
        table = WeakLabels(names, np.column_stack([space.metric_array(n) for n in names]))
        if archs is not None:
            table = WeakLabels(names, table.values[[space.index_of(a) for a in archs]])
        return table
    table = proxy_table(space, **proxy_kw) if archs is None else proxy_scores(space, archs, **proxy_kw)
    if space.name == "nb201":
        extra = _naslib_nb201(space)
        rows = extra.values if archs is None else extra.values[[space.index_of(a) for a in archs]]
        table = WeakLabels(table.names + extra.names, np.hstack([table.values, rows]))
    return table


def features(space, archs: Sequence[Any] | None = None, *, canonical: bool = True, **proxy_kw: Any) -> np.ndarray:
    """``space.encode`` with the space's own weak scores appended as extra columns, both of
    each architecture's ``space.canonical`` form (of the architecture as given with
    ``canonical=False``: what a latency predictor reads).

    The appended columns are the proxies this package computes (``OWN_PROXIES`` for spaces
    with networks; ``params, flops`` for ``hwgpt-s``), in that order, at the end: sizes as
    logarithms, a missing score (no signal) as one below the column's minimum. Tree and
    ranking predictors read the proxies directly this way, which is worth more than the
    encoding alone (README, predictor benchmark); the ``zero-cost`` predictor reads one.

    Canonical forms: an accuracy predictor should see the function a cell computes, not the
    edges that never reach its output (their one-hot columns, and the parameters they add to
    ``params``/``flops``, are noise). On NB201 at N = 100 labels this lifts Kendall tau by
    about 0.02 (README, predictor benchmark). A latency, though, is that of the network as
    built, dead edges included: with the canonical form a forest's Kendall tau on NB201
    latencies drops by 0.05 to 0.19, hence ``canonical=False``.
    """
    if archs is not None and space.name in ("nb201", "hwgpt-s") and (
            space.name == "hwgpt-s" or _table_path(space)[0].exists()):
        # rows of the whole table: a missing score is filled from the whole table's minimum,
        # so an architecture's features do not depend on what else is asked for with it
        return features(space, canonical=canonical, **proxy_kw)[[space.index_of(a) for a in archs]]
    if archs is None and hasattr(space, "index_of"):
        # a canonical form is itself in the table: its row is read, not recomputed
        X = space.encoded_table()
        table = weak_labels(space, **proxy_kw)
        if canonical:
            canon = space.canonical_indices()
            X, table = X[canon], WeakLabels(table.names, table.values[canon])
    else:
        forms = list(space.enumerate() if archs is None else archs)
        forms = [space.canonical(a) for a in forms] if canonical else forms
        X = space.encode(forms)
        table = weak_labels(space, forms, **proxy_kw)
    own = [n for n in table.names if not n.startswith("naslib_")]
    W = np.column_stack([table.column(n) for n in own]).astype(np.float64)
    for j, name in enumerate(own):
        if name in ("params", "flops"):
            W[:, j] = np.log(np.maximum(W[:, j], 1e-12))
    lo = np.nanmin(np.where(np.isfinite(W), W, np.nan), axis=0) if np.isfinite(W).any() else np.zeros(W.shape[1])
    W = np.where(np.isfinite(W), W, np.nan_to_num(lo) - 1.0)
    return np.hstack([X.astype(np.float64), W])


def feature_names(space) -> tuple[str, ...]:
    """Names of the columns ``features`` appends (the last ``len(...)`` columns)."""
    return ("params", "flops") if space.name == "hwgpt-s" else OWN_PROXIES
