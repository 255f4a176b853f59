"""Input checks shared by every predictor's ``fit``: scikit-learn style ``ValueError`` naming the parameter."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_X_y

__all__ = ["check_fit_input"]


def check_fit_input(X, y) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y)
    if hasattr(X, "__len__") and len(X) != len(y_arr):
        raise ValueError(f"y: got {len(y_arr)} labels for {len(X)} rows of X; they must match")
    if y_arr.dtype.kind in "fc" and not np.all(np.isfinite(y_arr)):
        raise ValueError("y: contains NaN or infinite labels; every label must be finite")
    X, y = check_X_y(X, y, multi_output=True, y_numeric=True, ensure_all_finite=True)
    if len(X) < 2:
        raise ValueError(f"X: got {len(X)} sample(s); fit needs at least 2")
    if np.all(np.ptp(np.asarray(y, dtype=np.float64).reshape(len(y), -1), axis=0) == 0):
        raise ValueError("y: fewer than two distinct labels; a predictor cannot learn an order from them")
    return X, y
