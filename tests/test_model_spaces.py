"""``sr-adaptive`` and ``unet-blocks``: weight-sharing parents, dense subnets with inherited
weights (the shipped conformance suite), evaluators, bad input, and a search job on each.
Uses the tiny parents (seconds to train) in the session's private ``NAS_CACHE_DIR``."""

from __future__ import annotations

import copy

import pytest
import torch

import spaces
from nas import run_job
from nas.storage import Store
from spaces import InvalidArchitectureError, InvalidConfigError
from spaces._parents import get_parent
from spaces.conformance import check_networks, samples
from spaces.sr.model import SRNet
from spaces.unet.model import units


def perturbed(name: str) -> torch.nn.Module:
    """An untrained parent with every weight random (zero-initialised layers included), so
    that a wrong slice changes the output."""
    torch.manual_seed(0)
    m = get_parent(name).build()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.2)
    return m.eval()


@pytest.fixture(scope="module")
def sr():
    return spaces.get_space("sr-adaptive", parent="sr-tiny")


@pytest.fixture(scope="module")
def unet():
    return spaces.get_space("unet-blocks", parent="unet-tiny")


# -- inherited weights ----------------------------------------------------------------
@pytest.mark.parametrize("config", [{"parent": "sr-small"}, {"parent": "sr-small", "scale": 4, "align": 4}])
def test_sr_subnets_equal_parent_run_as_subnet(config):
    space = spaces.get_space("sr-adaptive", image_size=12, **config)
    check_networks(space, perturbed(config["parent"]), samples(space, 0, 6) + [space.largest(), space.smallest()])


def test_vit_subnets_equal_parent_run_as_subnet():
    """Without BatchNorm recalibration, a ViT subnet computes the parent's slices exactly."""
    space = spaces.get_space("vit-elastic", recalibrate=False)
    check_networks(space, perturbed("vit-small"), samples(space, 0, 4) + [space.largest(), space.smallest()])


def test_unet_subnets_equal_parent_run_as_subnet():
    space = spaces.get_space("unet-blocks")
    archs = samples(space, 0, 6) + [space.largest(), space.smallest(), space.baseline("bk-base"),
                                    space.baseline("bk-small")]
    check_networks(space, perturbed("unet-small"), archs, atol=1e-4)


def test_dense_subnets_trace(sr, unet):
    for space, parent in ((sr, perturbed("sr-tiny")), (unet, perturbed("unet-tiny"))):
        arch = samples(space, 3, 1)[0]
        net = space.materialize(arch, parent)
        inputs = space.example_inputs(arch, batch=2)
        traced = torch.jit.trace(net, inputs)
        torch.testing.assert_close(traced(*inputs), net(*inputs), rtol=0, atol=1e-6)


def test_cli_strings_for_config():
    s = spaces.get_space("sr-adaptive", parent="sr-tiny", scale="4", image_size="32")
    assert s.config["scale"] == 4 and s.config["image_size"] == 32


def test_optuna_parameters_are_the_networks():
    """Sampling never repairs after asking: what Optuna records is what was measured."""
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spaces.get_space("unet-blocks")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        arch = space.sample(trial)
        assert all(arch.params[k] == v for k, v in trial.params.items())
        study.tell(trial, 0.0)


def test_parent_of_another_space_is_refused(sr, unet):
    with pytest.raises(InvalidArchitectureError, match="must be a SRNet"):
        sr.materialize(sr.largest(), perturbed("unet-tiny"))
    small = spaces.get_space("unet-blocks")  # a tiny parent cannot hold unet-small's subnets
    with pytest.raises(InvalidArchitectureError, match="does not fit 'unet-small'"):
        small.materialize(small.largest(), perturbed("unet-tiny"))
    with pytest.raises(InvalidArchitectureError, match="does not fit 'sr-tiny'"):  # nor the other way round
        sr.materialize(sr.smallest(), perturbed("sr-small"))


# -- evaluators -----------------------------------------------------------------------
def test_sr_evaluate_reports_bicubic_beside(sr):
    m = sr.evaluate(sr.largest(), ["psnr", "ssim", "psnr_bicubic", "ssim_bicubic", "params", "mmacs"])
    assert 20.0 < m["psnr"] < 45.0 and 0.0 < m["ssim"] <= 1.0
    assert 29.0 < m["psnr_bicubic"] < 32.0 and 0.85 < m["ssim_bicubic"] < 0.95  # the fixed held-out set at x2
    assert m["params"] > sr.evaluate(sr.smallest(), ["params"])["params"]


def test_untrained_sr_net_is_exactly_bicubic():
    """The tails start at zero: before training, every subnet is bicubic upsampling."""
    space = spaces.get_space("sr-adaptive", parent="sr-tiny", scale=4)
    net = space.materialize(space.largest(), get_parent("sr-tiny").build())
    from spaces.sr.train import bicubic_scores, evaluate_sr

    assert evaluate_sr(net, None, 4) == pytest.approx(bicubic_scores(4), abs=1e-4)


def test_unet_evaluate(unet):
    m = unet.evaluate(unet.largest(), ["output_mse", "denoise_loss", "params", "mmacs"])
    assert m["output_mse"] == 0.0  # the largest subnet is the parent
    assert 0.0 < m["denoise_loss"] < 2.0
    small = unet.evaluate(unet.smallest(), ["output_mse", "mmacs"])
    assert small["output_mse"] > 0.0 and small["mmacs"] < m["mmacs"]


# -- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize("name,config,field", [
    ("sr-adaptive", {"scale": 3}, "space.scale"),
    ("sr-adaptive", {"image_size": 4}, "space.image_size"),
    ("sr-adaptive", {"align": 6}, "space.align"),
    ("unet-blocks", {"image_size": 18}, "space.image_size"),
    ("unet-blocks", {"parent": "vit-small"}, "space.parent"),
    ("unet-blocks", {"seed": -2}, "space.seed"),
    ("vit-elastic", {"image_size": 10}, "space.image_size"),
    ("sr-adaptive", {"image_size": 2048}, "space.image_size"),
    ("unet-blocks", {"image_size": 4}, "space.image_size"),
])
def test_bad_config(name, config, field):
    with pytest.raises(InvalidConfigError, match=field):
        spaces.get_space(name, **config)


def test_bad_architectures(sr, unet):
    p = sr.largest().params_dict()
    with pytest.raises(InvalidArchitectureError, match=r"b1.width is 12; valid: 0, 8, 16 \(widths are multiples of 8"):
        sr.from_params(p | {"b1.width": 12})
    q = unet.largest().params_dict()
    with pytest.raises(InvalidArchitectureError, match=r"s1.width is 12; valid: 8, 16 \(widths are multiples of 8"):
        unet.from_params(q | {"s1.width": 12})
    with pytest.raises(InvalidArchitectureError, match="every ResNet block of stage d2 is removed"):
        unet.from_params(q | {"d2.r0": 0})
    with pytest.raises(InvalidArchitectureError, match="unknown baseline 'bk-huge'"):
        spaces.get_space("unet-blocks").baseline("bk-huge")
    with pytest.raises(InvalidArchitectureError, match="one ResNet block per stage"):
        unet.baseline("bk-base")
    with pytest.raises(InvalidArchitectureError, match="not a network config"):
        type(unet).build_network({"widths": [16], "layers": 1, "attn_stages": [], "removed": ["d9.r0"]})
    with pytest.raises(InvalidArchitectureError, match="widths: 4 is not a positive multiple of 8"):
        type(unet).build_network({"widths": [4], "layers": 1, "attn_stages": []})
    with pytest.raises(InvalidArchitectureError, match=r"scales \(3,\)"):
        type(sr).build_network({"width": 8, "blocks": [8], "scales": [3]})
    big = spaces.get_space("unet-blocks").largest().params_dict()
    with pytest.raises(InvalidArchitectureError, match="every ResNet block of stage u2 is removed"):
        spaces.get_space("unet-blocks").from_params(big | {"u2.r0": 0, "u2.r1": 0})
    with pytest.raises(InvalidArchitectureError, match="width is 20; valid: 8, 12, 16"):
        spaces.get_space("sr-adaptive", parent="sr-tiny", align=4).from_params(p | {"width": 20})


def test_unet_sampling_never_removes_a_whole_stage():
    space = spaces.get_space("unet-blocks")
    for a in samples(space, 0, 200):
        cfg = space.subnet(a)
        for st in ("d1", "d2", "d3", "u1", "u2", "u3"):
            assert any(cfg.keeps(f"{st}.r{j}") for j in range(cfg.layers))
    assert set(space.subnet(space.smallest()).removed) == set(units(space.parent_config)) - {
        f"{st}.r0" for st in ("d1", "d2", "d3", "u1", "u2", "u3")}


def test_bk_baselines(unet):
    space = spaces.get_space("unet-blocks")
    base, small = space.subnet(space.baseline("bk-base")), space.subnet(space.baseline("bk-small"))
    assert set(base.removed) == {u for u in units(base) if u[0] in "du" and u.endswith("1")}
    assert set(small.removed) == set(base.removed) | {"mid.r0", "mid.a", "mid.r1"}
    assert base.widths == space.parent_config.widths


# -- jobs -----------------------------------------------------------------------------
@pytest.mark.parametrize("space_spec,quality,strategy", [
    ({"name": "sr-adaptive", "parent": "sr-tiny"}, {"name": "psnr", "direction": "maximize"}, "slimming"),
    ({"name": "unet-blocks", "parent": "unet-tiny"}, {"name": "output_mse", "direction": "minimize"}, "knapsack"),
])
def test_search_job(tmp_path, space_spec, quality, strategy):
    store = Store(f"sqlite:///{tmp_path / 'nas.db'}")
    spec = {"space": space_spec, "objectives": [quality, {"name": "mmacs", "direction": "minimize"}],
            "budget": {"evaluations": 14}, "seed": 0, "strategy": {"name": strategy},
            "execution": {"backend": "inline"}}
    result = run_job(spec, store)
    job = store.get_job(result.job_id)
    assert job.state == "completed", job.error
    assert job.provenance["parent"] == space_spec["parent"] and job.provenance["parent_digest"]
    trials = store.load_trials(result.job_id)
    assert len(trials) >= 2 and all(t.state == "complete" for t in trials)
    assert len({t.arch_id for t in trials}) == len(trials)
    # past the scoring phase: the slimming walk took steps, the knapsack planned networks
    assert any((t.source or {}).get("step", 0) > 0 or (t.source or {}).get("phase") == "knapsack" for t in trials)


def test_parent_mismatch_on_disk_is_reported(tmp_path, monkeypatch):
    """A checkpoint whose tensors do not fit the parent's network: a clear error, not a crash."""
    monkeypatch.setenv("NAS_CACHE_DIR", str(tmp_path))
    from spaces._parents import checkpoint_path, load_parent

    path = checkpoint_path("sr-tiny", 3)
    path.parent.mkdir(parents=True)
    sd = copy.deepcopy(SRNet(spaces.sr.parents.PARENT_CONFIGS["sr-small"]).state_dict())
    torch.save({"name": "sr-tiny", "seed": 3, "state_dict": sd, "metrics": {}}, path)
    with pytest.raises(spaces.SpacesError, match="does not match parent 'sr-tiny'"):
        load_parent("sr-tiny", 3)


def test_knapsack_plans_are_repaired_into_the_space():
    """A plan that removes every ResNet block of a stage becomes the nearest valid network."""
    from nas.strategies._slimming import _valid

    space = spaces.get_space("unet-blocks")
    params = space.largest().params_dict() | {"u3.r0": 0, "u3.r1": 0, "mid.a": 0}
    arch = _valid(space, params)
    assert arch.params["u3.r0"] == 1 and arch.params["u3.r1"] == 0 and arch.params["mid.a"] == 0
    assert _valid(space, params | {"s1.width": 12}) is None  # not a choice: nothing to repair
