"""``vit-elastic``: the weight-sharing parent, dense subnets with inherited weights, parent
training (deterministic, cached), evaluation and a search job on it. Uses ``vit-tiny``
(seconds to train); the session's private ``NAS_CACHE_DIR`` keeps checkpoints apart."""

from __future__ import annotations

import random

import pytest
import torch

import spaces
from nas import run_job
from nas.storage import Store
from spaces import InvalidArchitectureError, InvalidConfigError
from spaces._parents import ParentNotTrainedError, UnknownParentError, load_parent
from spaces.vit.model import SuperViT, param_count
from spaces.vit.parents import PARENT_CONFIGS


@pytest.fixture(scope="module")
def space():
    return spaces.get_space("vit-elastic", parent="vit-tiny")


@pytest.fixture(scope="module")
def trained(space):
    return space.parent()


def random_archs(space, n, seed=0):
    rng = random.Random(seed)
    return [space.from_params({c.name: rng.choice(c.values) for c in space.choices()}) for _ in range(n)]


def test_subnet_equals_parent_run_as_subnet(space):
    """Slicing is exact: the dense subnet computes what the parent computes restricted to it."""
    torch.manual_seed(0)
    parent = SuperViT(PARENT_CONFIGS["vit-small"])
    big = spaces.get_space("vit-elastic")
    for m in parent.modules():  # non-trivial statistics, so a wrong slice shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    parent.eval()
    x = torch.randn(5, 1, 8, 8)
    for arch in random_archs(big, 12) + [big.largest(), big.smallest()]:
        dense = big.materialize(arch, parent, recalibrate=False)
        sub = big.subnet(arch)
        torch.testing.assert_close(dense(x), parent(x, sub), rtol=0, atol=1e-5)
        assert sum(p.numel() for p in dense.parameters()) == param_count(sub)
        assert type(dense).__name__ == "ViT" and isinstance(dense, torch.nn.Module)


def test_dense_subnet_scripts_and_traces(space, trained):
    arch = random_archs(space, 1, seed=3)[0]
    net = space.materialize(arch)
    (x,) = space.example_inputs(arch, batch=4)
    torch.testing.assert_close(torch.jit.script(net)(x), net(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.jit.trace(net, x)(x), net(x), rtol=0, atol=1e-6)


def test_parent_training_is_deterministic_and_cached(tmp_path, monkeypatch, trained):
    """Trained again elsewhere with the same seed: the same weights, digest and metrics."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    b = load_parent("vit-tiny", 0)
    assert b.path.parent == tmp_path / "parents" and b.path != trained.path
    for k, v in trained.module.state_dict().items():
        torch.testing.assert_close(b.module.state_dict()[k], v, rtol=0, atol=0)
    assert b.digest == trained.digest and b.metrics["top1_largest"] == trained.metrics["top1_largest"]
    assert load_parent("vit-tiny", 0) is b  # loaded once per process
    assert not list(tmp_path.glob("parents/*.tmp*"))  # written atomically


def test_untrained_parent_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    with pytest.raises(ParentNotTrainedError, match="nas parents train vit-tiny --seed 7"):
        load_parent("vit-tiny", 7, train=False)
    with pytest.raises(UnknownParentError, match="valid: .*vit-small, vit-tiny"):
        load_parent("vit-huge")


def test_evaluate(space, trained):
    largest = space.evaluate(space.largest(), ["top1", "loss", "params", "mmacs"])
    assert set(largest) == {"top1", "loss", "params", "mmacs"} and largest["loss"] > 0
    # the largest subnet, recalibrated like the parent was at the end of training
    assert largest["top1"] == pytest.approx(trained.metrics["top1_largest"], abs=1.0)
    smallest = space.evaluate(space.smallest(), ["top1", "params"])
    assert smallest["params"] < largest["params"]
    assert 10.0 < smallest["top1"] <= 100.0
    assert space.evaluate(space.smallest(), ["params"]) == {"params": smallest["params"]}


@pytest.mark.parametrize("config,field", [({"seed": -1}, "space.seed"), ({"seed": "x"}, "space.seed"),
                                          ({"parent": "vit-huge"}, "space.parent"),
                                          ({"recalibrate": "maybe"}, "space.recalibrate")])
def test_bad_config(config, field):
    with pytest.raises(InvalidConfigError, match=field):
        spaces.get_space("vit-elastic", **config)


def test_cli_strings_for_config():
    s = spaces.get_space("vit-elastic", parent="vit-tiny", seed="2", recalibrate="false")
    assert s.config["seed"] == 2 and s.config["recalibrate"] is False


@pytest.mark.parametrize("change,needle", [({"s1.width": 12}, "s1.width is 12; valid: 8, 16"),
                                           ({"s9.width": 8}, "unknown key 's9.width'"),
                                           ({"s2.attn": True}, "s2.attn is True")])
def test_invalid_params(space, change, needle):
    params = space.largest().params_dict() | change
    with pytest.raises(InvalidArchitectureError, match=needle.replace("(", r"\(")):
        space.from_params(params)
    with pytest.raises(InvalidArchitectureError, match="missing key 's1.width'"):
        space.from_params({k: v for k, v in space.largest().params_dict().items() if k != "s1.width"})


def test_graph_matches_blocks(space):
    arch = space.largest()
    g = space.graph(arch)
    cfg = space.subnet(arch)
    assert sum(d["op"] == "mhsa" for _, d in g.nodes(data=True)) == sum(s.attn for s in cfg.stages)
    assert sum(d["op"] == "ffn_dw" for _, d in g.nodes(data=True)) == sum(s.depth for s in cfg.stages)


def test_search_job_records_parent_provenance(tmp_path, trained):
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    spec = {"space": {"name": "vit-elastic", "parent": "vit-tiny"},
            "objectives": [{"name": "top1", "direction": "maximize"}, {"name": "params", "direction": "minimize"}],
            "budget": {"evaluations": 6}, "seed": 0, "strategy": {"name": "random"},
            "execution": {"backend": "inline"}}
    result = run_job(spec, store)
    job = store.get_job(result.job_id)
    assert job.state == "completed" and job.n_evaluations == 6
    assert job.provenance == {"parent": "vit-tiny", "seed": 0, "parent_digest": trained.digest}
    trials = store.load_trials(result.job_id)
    assert all(0 < t.values["top1"] <= 100 for t in trials)
