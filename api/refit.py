"""Refitting a Target's latency model when a device agent posts measurements (in the background).

The API process never profiles, so a remote Target's model is learned from its whole-network
measurements alone. For a space with measured latency tables (``nb201``) that is the few-shot
``transfer`` model with the space's other devices as sources, which needs only a handful of
measurements; otherwise a ``ridge-rf`` regressor on the space's encoding. Each refit is stored
(``latency_models``) with its cross-validated accuracy, as the recipe it is rebuilt from (kind,
space, the measurements it was fitted on; ``rebuild_latency_model``), not as a pickled estimator.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from typing import Any

import numpy as np

__all__ = ["Refitter", "refit_target", "rebuild_latency_model", "MIN_MEASUREMENTS"]

log = logging.getLogger("nas.api.refit")
MIN_MEASUREMENTS = 5
_TRANSFER: dict[str, Any] = {}  # space name -> a transfer model whose source side is fitted once per process


class Refitter:
    """One daemon thread; requests for the same Target collapse while one is queued (a request that
    arrives while that Target's refit runs queues another, so no measurement is left out)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._queue: queue.Queue = queue.Queue()
        self._pending: set[str] = set()
        self._busy = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, daemon=True, name="latency-refit")
        self._thread.start()

    def request(self, target: Any) -> None:
        with self._lock:
            if target.key in self._pending:
                return
            self._pending.add(target.key)
        self._queue.put(target)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and shutdown: True when every requested refit has finished."""
        import time

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            with self._lock:
                if not self._pending and not self._busy:
                    return True
            time.sleep(0.05)
        return False

    def _work(self) -> None:
        while True:
            target = self._queue.get()
            with self._lock:
                self._pending.discard(target.key)
                self._busy += 1
            try:
                refit_target(self.store, target)
            except Exception:  # a failed refit must not kill the thread
                log.exception("refitting the latency model of %s failed", target.name)
            finally:
                with self._lock:
                    self._busy -= 1


def refit_target(store: Any, target: Any) -> dict[str, Any] | None:
    """Fit and store the latency model of ``target`` from its measurements; its info, or None."""
    from spaces import Architecture

    by_subject: dict[str, list[float]] = {}
    for m in store.load_measurements(target, ok_only=True):
        by_subject.setdefault(m.subject, []).append(m.median_ms)
    archs = {s: store.get_architecture(s) for s in by_subject}
    archs = {s: a for s, a in archs.items() if a is not None}
    if not archs:
        return None
    space_name = Counter(a["space"] for a in archs.values()).most_common(1)[0][0]
    rows = [(Architecture.from_dict(a), float(np.median(by_subject[s]))) for s, a in archs.items()
            if a["space"] == space_name]
    if len(rows) < MIN_MEASUREMENTS:
        return None
    # the space as the measured architectures were built (a model space's parent decides its encoding)
    config = store.space_config(rows[0][0].arch_id)
    space, kind, make = _maker(space_name, config)
    recipe = {"kind": kind, "space": space_name, "space_config": config,
              "training": [{"arch": a.to_dict(), "latency_ms": v} for a, v in rows]}
    X, y = _training_set(space, recipe)
    info: dict[str, Any] = {"space": space_name, "measured": len(rows)}
    info.update(_cross_validate(make, X, y))
    store.save_latency_model(target, kind, recipe, len(rows), info)
    log.info("latency model %s of %s refitted on %d measurements", kind, target.name, len(rows))
    return {"kind": kind, **info}


def rebuild_latency_model(recipe: dict[str, Any]) -> Any:
    """The fitted model a stored recipe describes (the same predictions as when it was stored:
    every model here is fitted with a fixed seed)."""
    space, kind, make = _maker(recipe["space"], recipe.get("space_config") or {})
    if kind != recipe["kind"]:
        raise ValueError(f"kind: got {recipe['kind']!r}; {recipe['space']} latency models are {kind!r} here")
    import copy

    model = copy.copy(make().fit(*_training_set(space, recipe)))
    if kind == "transfer":  # the instance is shared by every fit of this process: keep its own copy,
        model.__dict__.pop("_source_cache", None)  # without the source tables (predict needs only
        model.sources = None  # the fitted source side)
    return copy.deepcopy(model)


def _maker(space_name: str, config: dict[str, Any] | None = None) -> tuple[Any, str, Any]:
    """(space, kind, a factory of unfitted models) for a space's latency model."""
    from spaces import TabularSpace, get_space

    space = get_space(space_name, **(config or {}))
    transfer = _transfer_for(space) if isinstance(space, TabularSpace) else None
    if transfer is not None:
        return space, "transfer", lambda: transfer  # one instance: its source side (seconds to fit) is reused

    from predictors import get_predictor

    return space, "ridge-rf", lambda: get_predictor("ridge-rf", random_state=0)


def _training_set(space: Any, recipe: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    from spaces import Architecture

    rows = recipe["training"]
    return (space.encode([Architecture.from_dict(r["arch"]) for r in rows]),
            np.array([float(r["latency_ms"]) for r in rows]))


def _transfer_for(space: Any) -> Any:
    """The space's other devices' latency tables as sources of a ``transfer`` model (or None)."""
    if space.name in _TRANSFER:
        return _TRANSFER[space.name]
    from latency import get_latency_model

    latency = space.metrics().get("latency_ms")
    sources = {}
    if latency is not None:
        X_all = space.encoded_table()
        for device in latency.devices:
            col = space.metric_array(f"latency_ms@{device}")
            ok = np.isfinite(col) & (col > 0)
            if ok.sum() >= 100:
                sources[device] = (X_all[ok], col[ok])
    _TRANSFER[space.name] = get_latency_model("transfer", sources=sources, random_state=0) if sources else None
    return _TRANSFER[space.name]


def _cross_validate(make, X: np.ndarray, y: np.ndarray, folds: int = 5) -> dict[str, float]:
    from scipy.stats import spearmanr

    k = min(folds, len(y))
    pred = np.empty(len(y))
    idx = np.arange(len(y))
    for f in range(k):
        test = idx[f::k]
        train = np.setdiff1d(idx, test)
        if len(train) < 2:
            return {}
        pred[test] = make().fit(X[train], y[train]).predict(X[test])
    err = np.abs(pred - y) / y
    rho = spearmanr(pred, y)[0] if len(y) > 2 else float("nan")
    return {"cv_within_10pct": float(np.mean(err <= 0.1)), "cv_median_rel_error": float(np.median(err)),
            "cv_spearman": float(rho)}
