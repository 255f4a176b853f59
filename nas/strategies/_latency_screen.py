"""Screening a profiled latency objective with the Target's compiler-aware latency model.

For an objective such as ``latency_ms@cpu-ort`` the predictor-guided strategy does not learn
latency from the job's few labels alone: the Target's ``kernel-sum`` model (fusion rules,
per-kernel forests, calibration on whole networks; see :mod:`latency.kernel_model`) predicts
it, and is refitted on every measurement the job makes. The model traces networks, which is
too slow for a whole pool of thousands, so it predicts a fixed random sample of the pool and
a ridge+forest on the space's encoding (``ridge-rf``) carries that to every candidate,
trained on the model's predictions and the measured values (weighted up).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spaces import Architecture, SearchSpace

__all__ = ["LatencyScreen"]


class LatencyScreen:
    def __init__(self, space: SearchSpace, key: str, sample: Sequence[Architecture], seed: int,
                 log: Callable[..., None]) -> None:
        from latency import get_target

        self.space, self.key, self.seed, self.log = space, key, seed, log
        self.target = get_target(key.partition("@")[2])
        self.sample = list(sample)
        self.model: Any = None
        self.n_fit = -1
        self.rules = None

    def refit(self, archs: Sequence[Architecture], y_ms: np.ndarray) -> dict[str, Any]:
        """Refit the Target's kernel-sum model on every measurement so far (when there are new ones)."""
        from latency import get_latency_model

        if len(archs) == self.n_fit and self.model is not None:
            return self.info
        info: dict[str, Any] = {"labels": len(archs)}
        if self.model is not None and len(archs) > max(self.n_fit, 0):
            # how wrong the model was on the measurements it had not seen: logged, so a user sees
            # whether the screen deserves trust on this Target
            new = list(archs[max(self.n_fit, 0):])
            pred = self.model.predict(new)
            err = np.abs(pred - y_ms[max(self.n_fit, 0):]) / y_ms[max(self.n_fit, 0):]
            info["error_before_refit"] = float(np.median(err))
            info["within_10pct"] = float(np.mean(err <= 0.1))
        fit_on = list(self.sample) + list(archs)
        y = None if len(archs) < 3 else y_ms
        model = get_latency_model("kernel-sum", target=self.target, space=self.space, rules=self.rules,
                                  random_state=self.seed)
        model.fit(list(archs) if y is not None else fit_on[:32], y)
        self.rules = model.rules_
        self.model, self.n_fit = model, len(archs)
        if "error_before_refit" in info:
            self.log(f"latency model kernel-sum for {self.target.name}: median error {info['error_before_refit']:.1%} "
                     f"({info['within_10pct']:.0%} within 10%) on {len(new)} new "
                     f"measurements before refitting on {len(archs)}")
        self.info = info
        return info

    def most_uncertain(self, exclude: set[str]) -> Architecture | None:
        """The sample architecture the model knows least: the largest share of its predicted time in
        kernels the measured networks contained rarely or never (a kernel seen ``c`` times weighs
        ``1 / (1 + c)``: unseen kernels keep their profiled, uncalibrated time). Measuring it is
        the job-level half of nn-Meter's adaptive sampling."""
        from latency.fusion import kernels
        from latency.kernel_model import as_graphs

        if self.model is None:
            return None
        best, best_share = None, 0.0
        for arch, g in zip(self.sample, as_graphs(self.sample, self.space)):
            if arch.arch_id in exclude:
                continue
            ks = kernels(g, self.model.rules_)
            t = self.model._kernel_pred(ks)
            index, counts = self.model.kernel_index_, self.model.kernel_counts_
            weight = [1.0 / (1.0 + (counts[index[k.key]] if k.key in index else 0.0)) for k in ks]
            share = float(np.dot(t, weight)) / max(float(t.sum()), 1e-12)
            if share > best_share:
                best, best_share = arch, share
        return best

    def predict(self, X_cands: np.ndarray, X_sample: np.ndarray, X_lab: np.ndarray, y_lab: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ms for the candidates and for the labelled archs (same model for both)."""
        from predictors import get_predictor

        pseudo = self.model.predict(self.sample)
        X = np.vstack([X_sample, X_lab]) if len(X_lab) else X_sample
        y = np.r_[pseudo, y_lab] if len(X_lab) else pseudo
        w = np.r_[np.ones(len(pseudo)), np.full(len(X_lab), 4.0)] if len(X_lab) else np.ones(len(pseudo))
        distil = get_predictor("ridge-rf", random_state=self.seed).fit(X, np.log(y), sample_weight=w)
        return np.exp(distil.predict(X_cands)), np.exp(distil.predict(X_lab)) if len(X_lab) else np.zeros(0)
