"""Refitting a Target's latency model when a device agent posts measurements (in the background).

The API process never profiles, so a remote Target's model is learned from its whole-network
measurements alone. For a space with measured latency tables (``nb201``) that is the few-shot
``transfer`` model with the space's other devices as sources, which needs only a handful of
measurements; otherwise a ``ridge-rf`` regressor on the space's encoding. Each refit is stored
(``latency_models``) with its cross-validated accuracy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from typing import Any

import numpy as np

__all__ = ["Refitter", "refit_target", "MIN_MEASUREMENTS"]

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
    from spaces import Architecture, TabularSpace, get_space

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
    space = get_space(space_name)
    X = space.encode([a for a, _ in rows])
    y = np.array([v for _, v in rows])
    info: dict[str, Any] = {"space": space_name, "measured": len(rows)}
    transfer = _transfer_for(space) if isinstance(space, TabularSpace) else None
    if transfer is not None:
        def make():  # one instance: its source side (seconds to fit) is reused by every fold
            return transfer
        kind = "transfer"
    else:
        from predictors import get_predictor

        def make():
            return get_predictor("ridge-rf", random_state=0)
        kind = "ridge-rf"
    info.update(_cross_validate(make, X, y))
    model = make().fit(X, y)
    if kind == "transfer":  # predict needs the fitted source side, not the source tables: keep them out
        import copy

        model = copy.copy(model)
        model.__dict__.pop("_source_cache", None)
        model.sources = None
    store.save_latency_model(target, kind, model, len(rows), info)
    log.info("latency model %s of %s refitted on %d measurements", kind, target.name, len(rows))
    return {"kind": kind, **info}


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
