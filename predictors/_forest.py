"""``rf``: a random-forest predictor (the baseline ranker) with per-tree spread for exploration."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import check_fit_input

__all__ = ["ForestPredictor", "RidgeForestPredictor", "GBDTPredictor"]


class ForestPredictor(RegressorMixin, BaseEstimator):
    """Random forest on ``space.encode`` features; ``y`` may have several columns.

    ``predict_dist`` returns the mean and the spread over trees, which the engine's
    predictor-guided strategy uses for its exploration half.
    """

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 1, max_features: float | str = 0.5,
                 random_state: int | None = None, n_jobs: int | None = None, linear_base: bool = False) -> None:
        self.linear_base = linear_base
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None) -> ForestPredictor:
        X, y = check_fit_input(X, y)
        self.n_features_in_ = X.shape[1]
        Y = y.reshape(len(y), -1).astype(np.float64)
        self.n_outputs_ = Y.shape[1]
        if self.linear_base:
            # a ridge fit first, the forest on its residuals: trees read additive structure
            # (latency ~ a sum over ops and layers) from few labels badly, a linear model well
            from sklearn.linear_model import RidgeCV

            self.linear_ = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(X, Y, sample_weight=sample_weight)
            Y = Y - self.linear_.predict(X).reshape(Y.shape)
        # one forest per output: a shared forest splits for the easiest column and starves the rest
        self.forests_ = [RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
            random_state=None if self.random_state is None else self.random_state + j,
            n_jobs=self.n_jobs).fit(X, Y[:, j], sample_weight=sample_weight) for j in range(self.n_outputs_)]
        self._single = y.ndim == 1
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "forests_")
        X = validate_data(self, X, reset=False)
        out = np.stack([f.predict(X) for f in self.forests_], axis=1) + self._base(X)
        return out[:, 0] if self._single else out

    def _base(self, X) -> np.ndarray | float:
        return self.linear_.predict(X).reshape(len(X), -1) if self.linear_base else 0.0

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over the trees, shape ``(n, n_outputs)``."""
        check_is_fitted(self, "forests_")
        X = validate_data(self, X, reset=False).astype(np.float32)
        means, stds = [], []
        for f in self.forests_:
            per_tree = np.stack([t.predict(X, check_input=False) for t in f.estimators_])
            means.append(per_tree.mean(axis=0))
            stds.append(per_tree.std(axis=0))
        return np.stack(means, axis=1) + self._base(X), np.stack(stds, axis=1)


class RidgeForestPredictor(ForestPredictor):
    """``ridge-rf``: ridge regression plus a random forest on its residuals (the spread is the forest's)."""

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 1, max_features: float | str = 0.5,
                 random_state: int | None = None, n_jobs: int | None = None, linear_base: bool = True) -> None:
        super().__init__(n_estimators=n_estimators, min_samples_leaf=min_samples_leaf, max_features=max_features,
                         random_state=random_state, n_jobs=n_jobs, linear_base=linear_base)


class GBDTPredictor(RegressorMixin, BaseEstimator):
    """``gbdt``: scikit-learn gradient boosting, one model per output (a baseline ranker)."""

    def __init__(self, n_estimators: int = 200, max_depth: int = 3, learning_rate: float = 0.05,
                 subsample: float = 0.8, random_state: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None) -> GBDTPredictor:
        from sklearn.ensemble import GradientBoostingRegressor

        X, y = check_fit_input(X, y)
        self.n_features_in_ = X.shape[1]
        Y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        self._single = np.asarray(y).ndim == 1
        self.models_ = [GradientBoostingRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, random_state=self.random_state).fit(X, Y[:, j], sample_weight=sample_weight)
            for j in range(Y.shape[1])]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "models_")
        X = validate_data(self, X, reset=False)
        out = np.stack([m.predict(X) for m in self.models_], axis=1)
        return out[:, 0] if self._single else out
