"""The conformance suite every search space passes, shipped so that a space written outside
this project can be checked the same way: ``check_space(space)``, and for spaces with a
weight-sharing parent ``check_networks(space, parent)``.

Each check raises ``AssertionError`` saying which part of the contract failed.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._architecture import Architecture
from ._base import SearchSpace
from ._errors import InvalidArchitectureError
from ._suggest import RandomSuggest

__all__ = ["check_space", "check_networks", "samples"]


def samples(space: SearchSpace, seed: int, n: int = 50) -> list[Architecture]:
    suggest = RandomSuggest(seed)
    return [space.sample(suggest) for _ in range(n)]


def check_space(space: SearchSpace, n: int = 50) -> None:
    """Sampling, validation, JSON and pickle round trips, encoding, canonical forms, graph and description."""
    import networkx as nx

    archs = samples(space, 0, n)
    assert len({a.arch_id for a in archs}) > 1, "sampling returns one architecture only"
    for a in archs:
        assert (a.space, a.space_version) == (space.name, space.version), f"{a} carries the wrong space"
        space.validate(a)
        assert space.from_params(a.params_dict()) == a, f"from_params does not rebuild {a.params_dict()}"
        assert Architecture.from_json(a.to_json()) == a, "the JSON round trip changes the architecture"
    assert samples(space, 7, 10) == samples(space, 7, 10), "the same seed samples differently"
    assert samples(space, 7, 10) != samples(space, 8, 10), "different seeds sample the same architectures"

    x = space.encode(archs)
    assert isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating), "encode must return floats"
    assert x.ndim == 2 and x.shape[0] == len(archs) and np.isfinite(x).all(), "encode: shape or non-finite values"
    assert space.encode([]).shape == (0, x.shape[1]), "encode([]) must keep the width"
    np.testing.assert_array_equal(space.encode([archs[5 % n]])[0], x[5 % n], "an encoded row depends on its batch")

    for a in archs[:10]:
        c = space.canonical(a)
        space.validate(c)
        assert space.canonical(c) == c, "canonical must be idempotent"

    for a in archs[:10]:
        g = space.graph(a)
        assert isinstance(g, nx.DiGraph) and g.number_of_nodes() >= 1 and nx.is_directed_acyclic_graph(g), \
            "graph must be a non-empty DAG"

    clone = pickle.loads(pickle.dumps(space))
    assert type(clone) is type(space) and dict(clone.config) == dict(space.config), "pickling changes the space"
    assert samples(clone, 4, 10) == samples(space, 4, 10), "a pickled space samples differently"
    assert all(clone.from_params(a.params_dict()) == a for a in archs[:10]), "a pickled space rebuilds differently"

    d = json.loads(json.dumps(space.describe()))
    assert d["name"] == space.name, "describe names another space"
    assert [c["name"] for c in d["choices"]] == [c.name for c in space.choices()], "describe lists other choices"
    assert set(d["metrics"]) == set(space.metrics()), "describe lists other metrics"
    try:
        space.validate(Architecture("some-other-space", archs[0].space_version, archs[0].params))
    except InvalidArchitectureError:
        pass
    else:
        raise AssertionError("validate accepts an architecture of another space")


def check_networks(space: Any, parent: Any, archs: Sequence[Architecture] | None = None, *,
                   atol: float = 1e-5) -> None:
    """For a space with a weight-sharing parent (``materialize`` and ``run_subnet``):

    * the dense subnet's output equals the parent run as that subnet;
    * its config rebuilds it (``build_network(network_config)``) and its state dict loads
      into the rebuilt network with the same output (what export and import do);
    * its parameter count is what the space reports.
    """
    import torch

    archs = list(archs) if archs is not None else samples(space, 0, 8) + [space.largest(), space.smallest()]
    for a in archs:
        inputs = space.example_inputs(a, batch=2)
        dense = space.materialize(a, parent)
        with torch.no_grad():
            out = dense(*inputs)
            torch.testing.assert_close(out, space.run_subnet(parent, a, *inputs), rtol=0, atol=atol,
                                       msg=lambda m: f"{a.params_dict()}: dense subnet != parent run as subnet: {m}")
            rebuilt = type(space).build_network(json.loads(json.dumps(space.network_config(a))))
            rebuilt.load_state_dict(dense.state_dict())
            torch.testing.assert_close(rebuilt.eval()(*inputs), out, rtol=0, atol=0,
                                       msg=lambda m: f"{a.params_dict()}: the rebuilt network differs: {m}")
        if "params" in space.metrics():
            n = sum(p.numel() for p in dense.parameters())
            assert space.evaluate(a, ["params"])["params"] == n, f"{a.params_dict()}: params metric != {n}"
