"""``zero-cost``: the baseline that ranks by one proxy column and learns nothing but its sign."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_fit_input

__all__ = ["ZeroCostPredictor"]

PROXY_COLUMNS = ("params", "flops", "synflow", "nwot", "jacov")


class ZeroCostPredictor(RegressorMixin, BaseEstimator):
    """Predicts ``sign * X[:, column]``: one zero-cost proxy as the ranking.

    ``X`` comes from ``predictors.weak_labels.features(space, archs)``, whose last columns are
    the proxies; ``proxy`` names one of them and ``n_proxies`` says how many there are (5 for
    spaces with networks, 2 for ``hwgpt-s``: ``params, flops``). ``fit`` only picks the sign
    that agrees with the labels (Spearman), so "more parameters is better" and "less is
    better" are both served.
    """

    def __init__(self, proxy: str = "nwot", n_proxies: int = 5, random_state: int | None = None) -> None:
        self.proxy = proxy
        self.n_proxies = n_proxies
        self.random_state = random_state

    def _column(self, n_features: int) -> int:
        if n_features <= len(PROXY_COLUMNS) and self.n_proxies == len(PROXY_COLUMNS):
            raise ValueError(f"X: got {n_features} columns; zero-cost reads the proxy columns that "
                             "predictors.weak_labels.features appends to the encoding (set n_proxies for another layout)")
        if isinstance(self.n_proxies, bool):
            raise ValueError(f"n_proxies: got {self.n_proxies!r}; valid: an integer")
        if not isinstance(self.n_proxies, int) or not 1 <= self.n_proxies <= min(n_features, len(PROXY_COLUMNS)):
            raise ValueError(f"n_proxies: got {self.n_proxies!r}; valid: 1 to {min(n_features, len(PROXY_COLUMNS))}")
        names = PROXY_COLUMNS[:self.n_proxies]
        if self.proxy not in names:
            raise ValueError(f"proxy: got {self.proxy!r}; valid: {', '.join(names)}")
        return n_features - self.n_proxies + names.index(self.proxy)

    def fit(self, X, y, sample_weight=None) -> ZeroCostPredictor:
        from scipy.stats import spearmanr

        X, y = check_fit_input(X, y)
        if np.asarray(y).ndim > 1 and np.asarray(y).shape[1] != 1:
            raise ValueError(f"y: got {np.asarray(y).shape[1]} columns; zero-cost ranks by one label (1 column)")
        self.n_features_in_ = X.shape[1]
        self.column_ = self._column(X.shape[1])
        y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0]
        x = X[:, self.column_]
        rho = spearmanr(x, y)[0] if np.ptp(x) > 0 else 0.0
        self.sign_ = -1.0 if np.isfinite(rho) and rho < 0 else 1.0
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "column_")
        X = validate_data(self, X, reset=False)
        return self.sign_ * X[:, self.column_].astype(np.float64)
