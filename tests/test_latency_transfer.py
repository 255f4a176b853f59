"""The ``transfer`` latency model: few-shot accuracy on real NB201 tables, determinism, caching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from latency import get_latency_model
from latency._transfer import _hypotheses, _posterior
from predictors.metrics import spearman


@pytest.fixture(scope="module")
def nb201():
    """Encodings and latencies of a few devices; 70% of the archs are the sources' part."""
    from spaces import get_space

    space = get_space("nb201")
    X = np.asarray(space.encoded_table(), dtype=np.float64)
    lat = {d: space.metric_array(f"latency_ms@{d}")
           for d in ("raspi4", "pixel3", "fpga", "samsung_a50", "titan_rtx_256", "cortexA76cpu_tflite21")}
    order = np.random.default_rng(0).permutation(len(X))
    return X, lat, order[:int(0.7 * len(X))], order[int(0.7 * len(X)):]


def _sources(nb201, devices):
    X, lat, src, _ = nb201
    out = {}
    for d in devices:
        rows = src[np.isfinite(lat[d][src])]  # the nn-Meter device measured a subset only
        out[d] = (X[rows], lat[d][rows])
    return out


def test_few_shot_raspi4_from_other_devices_ranks_unseen_archs(nb201):
    X, lat, src, test = nb201
    sources = _sources(nb201, ["pixel3", "fpga", "samsung_a50", "titan_rtx_256", "cortexA76cpu_tflite21"])
    train = src[:10]  # 10 measurements of the new device, from the sources' part
    model = get_latency_model("transfer", sources=sources, random_state=0).fit(X[train], lat["raspi4"][train])
    pred = model.predict(X[test])  # archs no source device measured
    assert pred.shape == (len(test),) and np.all(pred > 0)
    assert spearman(lat["raspi4"][test], pred) > 0.9
    assert np.median(np.abs(pred / lat["raspi4"][test] - 1)) < 0.3  # milliseconds, not just an order
    assert set(model.anchor_weights_) == set(sources)
    assert 0.0 <= sum(model.anchor_weights_.values()) <= 1.0 + 1e-9


def test_deterministic_for_a_seed_and_source_side_cached(nb201):
    X, lat, src, test = nb201
    sources = _sources(nb201, ["pixel3", "fpga", "titan_rtx_256"])
    train = src[:20]
    fit = lambda: get_latency_model("transfer", sources=sources, random_state=3).fit(  # noqa: E731
        X[train], lat["raspi4"][train])
    a, b = fit(), fit()
    assert np.array_equal(a.predict(X[test]), b.predict(X[test]))
    # refitting on the new device reuses the source side; new sources rebuild it
    first = a.source_model_
    a.fit(X[src[20:40]], lat["raspi4"][src[20:40]])
    assert a.source_model_ is first
    a.set_params(sources=dict(sources))
    a.fit(X[train], lat["raspi4"][train])
    assert a.source_model_ is not first
    assert np.allclose(a.predict(X[test]), b.predict(X[test]))
    # sklearn clone: same parameters, unfitted, same predictions once fitted
    c = clone(b)
    assert c.get_params()["random_state"] == 3 and not hasattr(c, "coef_sources_")
    assert np.allclose(c.fit(X[train], lat["raspi4"][train]).predict(X[test]), b.predict(X[test]))


def test_dual_and_primal_heads_agree():
    rng = np.random.default_rng(0)
    R, E = rng.standard_normal((12, 3)), rng.standard_normal((12, 2)) * 0.3
    t = R @ [0.5, -0.2, 0.1] + 0.05 * rng.standard_normal(12)
    hyp = _hypotheses(3)
    ev_d, w_d = _posterior(R, E, t - t.mean(), hyp, dual=True)
    ev_p, w_p = _posterior(R, E, t - t.mean(), hyp, dual=False)
    assert np.allclose(ev_d, ev_p, rtol=1e-6, atol=1e-6)
    assert np.allclose(w_d, w_p, rtol=1e-5, atol=1e-7)


# -- bad input: a ValueError that names the parameter --------------------------------------------------

def _toy(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 2, size=(n, d)).astype(float)
    return X, np.exp(X @ rng.random(d) * 0.3 + 1.0)


def _good_sources():
    X, y = _toy()
    return {"a": (X, y), "b": (X[:30], y[:30] * 1.7)}


def _with(name, X=None, y=None):
    src = _good_sources()
    X0, y0 = src[name]
    src[name] = (X0 if X is None else X, y0 if y is None else y)
    return src


def _bad_y(y, i, value):
    y = np.array(y, dtype=float)
    y[i] = value
    return y


_X0, _Y0 = _toy()
BAD_SOURCES = [
    (None, "sources"),
    ({}, "sources"),
    ([("a", (_X0, _Y0))], "sources"),
    ({"": (_X0, _Y0)}, "sources"),
    ({"a": _X0}, r"sources\['a'\]"),
    ({"a": (_X0, _Y0, _Y0)}, r"sources\['a'\]"),
    (_with("a", y=_Y0[:-1]), r"sources\['a'\].*must match"),
    (_with("a", X=_X0[:, 0]), r"sources\['a'\].*2-D"),
    (_with("a", y=_bad_y(_Y0, 3, np.nan)), r"sources\['a'\].*NaN"),
    (_with("a", y=_bad_y(_Y0, 3, np.inf)), r"sources\['a'\].*infinite"),
    (_with("a", y=_bad_y(_Y0, 3, -1.0)), r"sources\['a'\].*<= 0"),
    (_with("a", y=_bad_y(_Y0, 3, 0.0)), r"sources\['a'\].*<= 0"),
    ({"a": (_X0[:1], _Y0[:1])}, r"sources\['a'\].*at least 2"),
    (_with("b", X=np.c_[_X0[:30], _X0[:30]]), r"sources\['b'\].*features"),
    ({"a": (np.array([["x", "y"]] * 3), np.ones(3))}, r"sources\['a'\]"),
]


@pytest.mark.parametrize("sources, needle", BAD_SOURCES, ids=[str(i) for i in range(len(BAD_SOURCES))])
def test_bad_sources_raise_value_error_naming_them(sources, needle):
    X, y = _toy(10, seed=1)
    with pytest.raises(ValueError, match=needle):
        get_latency_model("transfer", sources=sources).fit(X, y)


@pytest.mark.parametrize("X, y, needle", [
    (_toy(10)[0], _toy(10)[1][:9], "y: got 9 latencies for 10"),
    (_toy(10)[0], _bad_y(_toy(10)[1], 0, np.nan), "y: .*NaN"),
    (_toy(10)[0], _bad_y(_toy(10)[1], 0, np.inf), "y: .*infinite"),
    (_toy(10)[0], _bad_y(_toy(10)[1], 0, -2.0), "y: .*<= 0"),
    (_toy(10)[0], _bad_y(_toy(10)[1], 0, 0.0), "y: .*<= 0"),
    (_toy(1)[0], _toy(1)[1], "y: got 1 measurement"),
    (np.c_[_toy(10)[0], _toy(10)[0]], _toy(10)[1], "X: got 12 features; the sources' encodings have 6"),
])
def test_bad_measurements_raise_value_error_naming_them(X, y, needle):
    with pytest.raises(ValueError, match=needle):
        get_latency_model("transfer", sources=_good_sources()).fit(X, y)


@pytest.mark.parametrize("params, needle", [({"bogus": 1}, "bogus"), ({"n_landmarks": 0}, "n_landmarks"),
                                            ({"alpha": -1.0}, "alpha")])
def test_bad_parameters_raise_value_error_naming_them(params, needle):
    with pytest.raises(ValueError, match=needle):
        get_latency_model("transfer", sources=_good_sources(), **params).fit(*_toy(10))


def test_predict_checks_fitted_and_width():
    from sklearn.exceptions import NotFittedError

    model = get_latency_model("transfer", sources=_good_sources())
    X, y = _toy(10)
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y)
    assert model.predict(X).shape == (10,)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :4])
