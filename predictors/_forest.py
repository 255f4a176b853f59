"""``rf``: a random-forest predictor (the baseline ranker) with per-tree spread for exploration."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

__all__ = ["ForestPredictor"]


class ForestPredictor(RegressorMixin, BaseEstimator):
    """Random forest on ``space.encode`` features; ``y`` may have several columns.

    ``predict_dist`` returns the mean and the spread over trees, which the engine's
    predictor-guided strategy uses for its exploration half.
    """

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 1, max_features: float | str = 1.0,
                 random_state: int | None = None, n_jobs: int | None = None) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, sample_weight=None) -> ForestPredictor:
        X, y = check_X_y(X, y, multi_output=True, y_numeric=True, ensure_all_finite=True)
        if len(X) < 2:
            raise ValueError(f"X: got {len(X)} sample(s); fit needs at least 2")
        self.n_features_in_ = X.shape[1]
        self.forest_ = RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf, max_features=self.max_features,
            random_state=self.random_state, n_jobs=self.n_jobs).fit(X, y, sample_weight=sample_weight)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "forest_")
        return self.forest_.predict(validate_data(self, X, reset=False))

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over the trees, shape ``(n, n_outputs)``."""
        check_is_fitted(self, "forest_")
        X = validate_data(self, X, reset=False)
        per_tree = np.stack([t.predict(X) for t in self.forest_.estimators_])
        if per_tree.ndim == 2:
            per_tree = per_tree[:, :, None]
        return per_tree.mean(axis=0), per_tree.std(axis=0)
