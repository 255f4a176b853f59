"""The predictor registry, the forest predictors and the ranking metrics."""

from __future__ import annotations

import numpy as np
import pytest

from predictors import get_predictor, list_predictors
from predictors.metrics import kendall_tau, ndcg_at_k, spearman, top_k_regret


FORESTS = ["rf", "ridge-rf"]
RANKERS = ["lambdarank", "ranknet"]
BOOSTED = ["gbdt"]


def test_registry_lists_every_family():
    assert set(FORESTS + RANKERS + BOOSTED) <= set(list_predictors())


@pytest.mark.parametrize("name", FORESTS)
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


@pytest.mark.parametrize("name", RANKERS)
def test_rankers_learn_an_order_deterministically(name):
    rng = np.random.default_rng(1)
    X = rng.random((120, 6))
    y = X @ np.array([3.0, -2.0, 1.0, 0.0, 0.5, 0.0]) + 0.05 * rng.standard_normal(120)
    fit = lambda: get_predictor(name, random_state=3, epochs=40).fit(X[:80], y[:80])  # noqa: E731
    pred = fit().predict(X[80:])
    assert pred.shape == (40,)
    assert kendall_tau(y[80:], pred) > 0.6
    assert np.array_equal(pred, fit().predict(X[80:]))


def test_weak_label_pretraining_is_used():
    rng = np.random.default_rng(2)
    X = rng.random((300, 6))
    w = X @ np.array([3.0, -2.0, 1.0, 0.0, 0.5, 0.0])  # a cheap proxy that correlates with the truth
    y = w + 0.3 * rng.standard_normal(300)
    plain = get_predictor("lambdarank", random_state=0, epochs=30).fit(X[:15], y[:15])
    pre = get_predictor("lambdarank", random_state=0, epochs=30, pretrain_epochs=30).fit(
        X[:15], y[:15], weak_X=X[15:], weak_y=w[15:, None])
    assert not np.array_equal(plain.predict(X), pre.predict(X))
    assert kendall_tau(y[15:], pre.predict(X[15:])) > kendall_tau(y[15:], plain.predict(X[15:])) - 0.05
    with pytest.raises(ValueError, match="weak_X, weak_y: give both or neither"):
        get_predictor("lambdarank").fit(X[:15], y[:15], weak_X=X)
    with pytest.raises(ValueError, match="weak_X: got shape"):
        get_predictor("lambdarank").fit(X[:15], y[:15], weak_X=X[:, :2], weak_y=w[:, None])


@pytest.mark.parametrize("params, needle", [({"loss": "mse"}, "^loss: got 'mse'"), ({"epochs": 0}, "^epochs: got 0"),
                                            ({"lr": -1}, "^lr: got -1")])
def test_ranker_bad_parameters(params, needle):
    X, y = np.random.rand(10, 3), np.arange(10.0)
    with pytest.raises(ValueError, match=needle):
        get_predictor("lambdarank", **params).fit(X, y)


def test_ranker_needs_one_label_column():
    with pytest.raises(ValueError, match="one order"):
        get_predictor("ranknet").fit(np.random.rand(10, 3), np.random.rand(10, 2))


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


def test_zero_cost_ranks_by_one_proxy_column_with_a_learned_sign():
    rng = np.random.default_rng(4)
    X = np.hstack([rng.random((50, 3)), rng.random((50, 5))])  # 3 encoding columns + 5 proxies
    y = -X[:, 3 + 3]  # the labels fall as "nwot" (4th proxy) rises
    model = get_predictor("zero-cost", proxy="nwot").fit(X, y)
    assert model.sign_ == -1.0
    assert np.array_equal(model.predict(X), -X[:, 6])
    with pytest.raises(ValueError, match="^proxy: got 'zen'; valid: params, flops, synflow, nwot, jacov"):
        get_predictor("zero-cost", proxy="zen").fit(X, y)
    with pytest.raises(ValueError, match="^proxy: got 'nwot'; valid: params, flops"):
        get_predictor("zero-cost", proxy="nwot", n_proxies=2).fit(X, y)
    with pytest.raises(ValueError, match="^n_proxies: got 9"):
        get_predictor("zero-cost", n_proxies=9).fit(X, y)
    with pytest.raises(ValueError, match="^X: got 3 columns; zero-cost reads the proxy columns"):
        get_predictor("zero-cost").fit(X[:, :3], y)
    with pytest.raises(ValueError, match="^y: got 2 columns"):
        get_predictor("zero-cost").fit(X, np.c_[y, y])


@pytest.mark.parametrize("params, needle", [({"floor": -1}, "^floor: got -1"), ({"prior": "svm"}, "^prior: got 'svm'"),
                                            ({"pretrain_batch_size": 0}, "^pretrain_batch_size: got 0"),
                                            ({"sigma": float("nan")}, "^sigma: got nan"),
                                            ({"lr": float("inf")}, "^lr: got inf"),
                                            ({"random_state": "a"}, "^random_state: got 'a'"),
                                            ({"random_state": -1}, "^random_state: got -1"),
                                            ({"floor": True}, "^floor: got True")])
def test_ranker_more_bad_parameters(params, needle):
    with pytest.raises(ValueError, match=needle):
        get_predictor("ranknet", **params).fit(np.random.rand(10, 3), np.arange(10.0))


def test_weak_labels_may_be_missing_but_not_infinite():
    rng = np.random.default_rng(5)
    X, W = rng.random((200, 4)), rng.random((200, 2))
    W[::3, 1] = np.nan  # a proxy known for two thirds of the pool
    y = X[:20, 0] + W[:20, 0]
    model = get_predictor("lambdarank", random_state=0, epochs=20, pretrain_epochs=5).fit(X[:20], y, weak_X=X, weak_y=W)
    assert np.all(np.isfinite(model.predict(X)))
    W[0, 0] = np.inf
    with pytest.raises(ValueError, match="^weak_y: infinite values"):
        get_predictor("lambdarank").fit(X[:20], y, weak_X=X, weak_y=W)
    with pytest.raises(ValueError, match="^weak_X: contains NaN"):
        get_predictor("lambdarank").fit(X[:20], y, weak_X=np.where(X > 0.99, np.nan, X), weak_y=W[:, :1])
    with pytest.raises(ValueError, match="^weak_y: got 199 rows for 200"):
        get_predictor("lambdarank").fit(X[:20], y, weak_X=X, weak_y=W[1:])


def test_pretraining_is_reused_with_the_same_result():
    from predictors import _rank

    rng = np.random.default_rng(6)
    X, W = rng.random((300, 5)), rng.random((300, 2))
    y = X[:30] @ np.arange(5.0)
    fit = lambda: get_predictor("ranknet", random_state=1, epochs=10, pretrain_epochs=3).fit(  # noqa: E731
        X[:30], y, weak_X=X, weak_y=W)
    _rank._PRETRAINED.clear()
    first = fit().predict(X)
    assert len(_rank._PRETRAINED) == 1
    assert np.array_equal(first, fit().predict(X))  # from the memo: identical
    _rank._PRETRAINED.clear()
    assert np.array_equal(first, fit().predict(X))  # recomputed: identical again


def test_fitting_a_thousand_architectures_takes_seconds():
    import time

    from spaces import get_space

    space = get_space("nb201", dataset="cifar10")
    X, y = space.encoded_table(), space.metric_array("accuracy")
    idx = np.random.default_rng(0).permutation(len(X))[:3000]
    t0 = time.perf_counter()
    get_predictor("lambdarank", random_state=0).fit(X[idx[:1000]], y[idx[:1000]], weak_X=X[idx],
                                                    weak_y=np.c_[X[idx, 30:35] @ np.arange(5.0)])
    assert time.perf_counter() - t0 < 60  # measured ~10 s on two busy cores
