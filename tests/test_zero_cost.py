"""NB201 networks, zero-cost proxies and weak labels, checked against NASLib's published numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from predictors.metrics import spearman
from predictors.weak_labels import _NASLIB_EDGES, _NASLIB_OPS, features, weak_labels
from predictors.zero_cost import compute_proxies, image_batch
from spaces import get_space
from spaces._data import data_file


def _naslib(dataset: str) -> dict:
    with open(data_file("naslib-zc-nb201", "zc_nasbench201.json")) as f:
        return json.load(f)[dataset]


def _arch(space, key: str):
    ops = [int(t) for t in key.strip("()").split(",")]
    return space.from_params({f"{j - 1}<-{i - 1}": _NASLIB_OPS[o] for (i, j), o in zip(_NASLIB_EDGES, ops)})


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "ImageNet16-120"])
def test_nb201_network_matches_naslib_parameter_counts(dataset):
    # NASLib counted the parameters of the real NB201 networks: equal counts check both our
    # network and our reading of NASLib's op/edge encoding
    space = get_space("nb201", dataset=dataset)
    for key, entry in list(_naslib(dataset).items())[:8]:
        model = space.materialize(_arch(space, key))
        assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(entry["params"]["score"], abs=1e-6)


def test_nb201_network_forward_shapes():
    space = get_space("nb201", dataset="ImageNet16-120")
    arch = space.enumerate()[123]
    (x,) = space.example_inputs(arch, batch=2)
    assert x.shape == (2, 3, 16, 16)
    assert space.materialize(arch)(x).shape == (2, 120)
    small = space.materialize(arch, channels=8, cells=1)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in space.materialize(arch).parameters())


def test_proxies_are_deterministic_and_validated():
    space = get_space("nb201", dataset="cifar10")
    arch = space.enumerate()[5000]
    x = image_batch(16, 16)
    build = lambda: space.materialize(arch, channels=8, cells=1)  # noqa: E731
    a = compute_proxies(build, x, ("synflow", "nwot", "jacov", "params", "flops"), seed=3)
    b = compute_proxies(build, x, ("synflow", "nwot", "jacov", "params", "flops"), seed=3)
    assert a == b
    assert all(math.isfinite(v) for v in a.values())
    with pytest.raises(ValueError, match="names: got 'zen'"):
        compute_proxies(build, x, ("zen",))


def test_disconnected_cell_has_no_jacobian_signal():
    space = get_space("nb201", dataset="cifar10")
    dead = space.from_params({e: "none" for e in ("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2")})
    scores = compute_proxies(lambda: space.materialize(dead, channels=8, cells=1), image_batch(8, 16), ("jacov",))
    assert scores["jacov"] == -math.inf


def test_own_proxies_agree_with_naslib():
    # our proxies run on a smaller network over photos, NASLib's on the full network over
    # CIFAR-10: the orders should still agree clearly on 40 architectures
    space = get_space("nb201", dataset="cifar10")
    data = list(_naslib("cifar10").items())[:40]
    archs = [_arch(space, k) for k, _ in data]
    ours = weak_labels(space, archs)
    for proxy in ("synflow", "nwot", "jacov"):
        theirs = np.array([e[proxy]["score"] for _, e in data])
        mine = ours.column(proxy)
        ok = np.isfinite(mine) & np.isfinite(theirs)
        assert spearman(theirs[ok], mine[ok]) > 0.6, proxy
        np.testing.assert_allclose(ours.column(f"naslib_{proxy}"), theirs)


def test_features_describe_the_canonical_form(tmp_path, monkeypatch):
    # no proxy table: the proxies are computed, on the canonical networks
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    space = get_space("nb201", dataset="cifar10")
    live = {"1<-0": "nor_conv_3x3", "2<-0": "none", "2<-1": "none", "3<-0": "skip_connect", "3<-1": "nor_conv_1x1"}
    a = space.from_params({**live, "3<-2": "none"})
    b = space.from_params({**live, "2<-0": "nor_conv_3x3", "3<-2": "none"})  # node 2 never reaches the output
    fa, fb = features(space, [a, b])
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(fa[:120], space.encode([a])[0])
    assert not np.array_equal(fb[:120], space.encode([b])[0])
    assert weak_labels(space, [b]).column("params")[0] > weak_labels(space, [a]).column("params")[0]


def test_weak_labels_hwgpt_and_unknown_column():
    space = get_space("hwgpt-s")
    w = weak_labels(space, space.enumerate()[:5])
    assert w.names == ("params", "flops") and w.values.shape == (5, 2)
    with pytest.raises(ValueError, match="name: got 'nwot'"):
        w.column("nwot")


def test_image_batch_is_real_and_seeded():
    x = image_batch(4, 32, seed=1)
    assert x.shape == (4, 3, 32, 32) and torch.equal(x, image_batch(4, 32, seed=1))
    assert not torch.equal(x, image_batch(4, 32, seed=2))
