"""The API's latency-model refit: stored as a JSON recipe (kind, space, measurements), rebuilt
into the same fitted model, never a pickled estimator."""

from __future__ import annotations

import json

import numpy as np
import pytest


# nb201: the transfer model (the space's other devices as sources); vit-elastic: ridge-rf
@pytest.mark.parametrize("space_name", ["nb201", "vit-elastic"])
def test_a_refit_is_stored_as_a_recipe_and_rebuilds_the_same_model(space_name, tmp_path):
    from api.refit import _maker, _training_set, rebuild_latency_model, refit_target
    from latency import Measurement, Target
    from nas import run_job
    from nas.storage import Store
    from spaces import RandomSuggest, get_space

    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    config = {"parent": "vit-tiny"} if space_name == "vit-elastic" else {}
    key = "latency_ms@raspi4" if space_name == "nb201" else "params"
    objectives = [{"name": "accuracy"}, {"name": "latency_ms", "device": "raspi4"}] if space_name == "nb201" \
        else [{"name": "params"}]
    result = run_job({"space": {"name": space_name, **config}, "objectives": objectives,
                      "strategy": {"name": "random", "batch_size": 8}, "budget": {"evaluations": 8}, "seed": 3,
                      "execution": {"backend": "inline"}}, store)
    target = Target(device="edge-test", backend="onnxruntime", threads=1, name="edge-test")
    # what an agent would post: a real device's latencies from nb201's table; for the ViT a
    # latency that grows with the parameters
    scale = 1.0 if space_name == "nb201" else 1e-4
    store.add_measurements([Measurement(target, t.arch_id, times_ms=(t.metrics[key] * scale,))
                            for t in result.trials])
    space = get_space(space_name, **config)
    info = refit_target(store, target)
    recipe, stored_info = store.load_latency_model(target)
    assert stored_info["kind"] == info["kind"] == recipe["kind"] == ("transfer" if space_name == "nb201" else "ridge-rf")
    assert recipe["space_config"] == config
    assert json.loads(json.dumps(recipe)) == recipe and len(recipe["training"]) == 8
    model = rebuild_latency_model(recipe)
    _, _, make = _maker(space_name, config)
    X, y = _training_set(space, recipe)
    probe = space.encode([space.sample(RandomSuggest(s)) for s in range(20)])
    assert np.allclose(model.predict(probe), make().fit(X, y).predict(probe))
    with pytest.raises(ValueError, match="kind: got 'magic'"):
        rebuild_latency_model({**recipe, "kind": "magic"})
    store.dispose()
