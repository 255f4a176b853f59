"""The predictor registry, the forest predictors and the ranking metrics."""

from __future__ import annotations

import numpy as np
import pytest

from predictors import get_predictor, list_predictors
from predictors.metrics import kendall_tau, ndcg_at_k, spearman, top_k_regret


@pytest.mark.parametrize("name", list_predictors())
def test_fit_predict_and_spread(name):
    rng = np.random.default_rng(0)
    X = rng.random((200, 8))
    y = np.c_[X @ np.arange(8.0), X[:, 0] ** 2]
    model = get_predictor(name, random_state=0).fit(X[:150], y[:150])
    mean, std = model.predict_dist(X[150:])
    assert mean.shape == std.shape == (50, 2) and np.all(std >= 0)
    assert np.allclose(model.predict(X[150:]), mean)
    assert kendall_tau(y[150:, 0], mean[:, 0]) > 0.6
    again = get_predictor(name, random_state=0).fit(X[:150], y[:150]).predict(X[150:])
    assert np.array_equal(again, model.predict(X[150:]))  # deterministic for a seed


@pytest.mark.parametrize("name", list_predictors())
@pytest.mark.parametrize("X, y, needle", [
    (np.ones((5, 3)), np.arange(4.0), "y: got 4 labels for 5 rows"),
    (np.random.rand(5, 3), np.array([1, 2, np.nan, 4, 5.0]), "NaN or infinite"),
    (np.random.rand(5, 3), np.array([1, 2, np.inf, 4, 5.0]), "NaN or infinite"),
    (np.random.rand(5, 3), np.full(5, 3.0), "fewer than two distinct labels"),
])
def test_bad_fit_input_is_a_clear_value_error(name, X, y, needle):
    with pytest.raises(ValueError, match=needle):
        get_predictor(name).fit(X, y)


def test_unknown_predictor_and_parameter():
    with pytest.raises(ValueError, match="valid predictors: .*rf"):
        get_predictor("svm")
    with pytest.raises(ValueError, match="^depth: not a parameter of predictor 'rf'"):
        get_predictor("rf", depth=3)


def test_metrics_on_known_orders():
    y = np.arange(20.0)
    assert kendall_tau(y, y) == pytest.approx(1.0) and spearman(y, -y) == pytest.approx(-1.0)
    assert ndcg_at_k(y, y, 10) == pytest.approx(1.0)
    assert ndcg_at_k(y, -y, 10) < 0.3 < ndcg_at_k(y, y + np.random.default_rng(0).normal(0, 2, 20), 10)
    assert top_k_regret(y, y, 1) == 0.0
    assert top_k_regret(y, -y, 5) == 15.0  # predicted top 5 are the true 0..4: best is 4, true best 19


@pytest.mark.parametrize("fn", [kendall_tau, spearman, ndcg_at_k, top_k_regret])
def test_metrics_reject_bad_input(fn):
    with pytest.raises(ValueError, match="must match"):
        fn([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        fn([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
