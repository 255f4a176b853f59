"""``llm-subnet``: the decoder, masks, importance, reformation, the evolution strategy, the
Hugging Face importer and bad input (on ``llm-tiny``, trained in seconds)."""

from __future__ import annotations

import copy
import math
import random

import pytest
import torch

import spaces
from spaces import CheckpointError, InvalidArchitectureError, InvalidConfigError
from spaces.conformance import check_networks, check_space


@pytest.fixture(scope="module")
def space():
    return spaces.get_space("llm-subnet", parent="llm-tiny", reform=False)


def test_llm_subnet_conforms_and_masked_equals_dense(space):
    check_space(space, n=12)
    check_networks(space, space.parent().module)  # the dense slice == the parent run with the masks


def test_counts_alone_take_the_importance_masks_and_masks_round_trip(space):
    arch = space.uniform(0.6)
    counts = {k: v for k, v in arch.params_dict().items() if k != "masks"}
    assert space.from_params(counts) == arch  # importance-best masks for the counts
    again = space.from_params(arch.params_dict())
    assert again == arch and 0.55 < space.evaluate(arch, ["kept_ratio"])["kept_ratio"] < 0.65
    mag = space.uniform(0.6, "magnitude")
    assert mag.params_dict()["masks"] != arch.params_dict()["masks"]


def test_reformation_lowers_perplexity_and_keeps_the_dense_model_plain(space, tmp_path):
    arch = space.uniform(0.5)
    m = space.evaluate(arch, ["ppl_test", "ppl_reformed"])
    assert m["ppl_reformed"] < m["ppl_test"]
    full = space.evaluate(space.largest(), ["ppl_test", "ppl_reformed"])
    assert abs(full["ppl_reformed"] - full["ppl_test"]) < 0.01 * full["ppl_test"]  # nothing removed: nothing to fix
    net = space.materialize(arch, reform=True)
    ids = space.example_inputs(arch, batch=2)[0][:, :32]
    out = spaces.export_architecture(space, arch, tmp_path / "x")
    loaded = spaces.load_architecture(out)
    with torch.no_grad():
        assert torch.allclose(loaded(ids), space.materialize(arch)(ids), atol=1e-5)  # the space's reform=False
    assert sum(p.numel() for p in net.parameters()) == space.evaluate(arch, ["params"])["params"]


def test_mutation_and_crossover(space):
    rng = random.Random(0)
    a = space.uniform(0.6)
    b = space.mutate(a, rng, p_mask=1.0, p_ratio=0.0, p_depth=0.0, alpha=0.8)
    ma, mb = space.masks(a), space.masks(b)
    assert b != a and [len(x) for x in ma.mlp] == [len(x) for x in mb.mlp]
    for old, new in zip(ma.mlp, mb.mlp):  # at least alpha of each mask survives
        assert len(set(old) & set(new)) >= 0.8 * len(old) - 1
    c = space.crossover(a, space.mutate(a, rng, p_ratio=1.0), rng)
    space.validate(c)
    assert space.from_params(c.params_dict()) == c
    wild = space.mutate(a, rng, p_ratio=1.0)  # every count redrawn: far outside a 2% window
    fitted = space.fit_bounds(wild, {"kept_ratio": (0.58, 0.60)}, rng)
    assert 0.58 <= space.evaluate(fitted, ["kept_ratio"])["kept_ratio"] <= 0.60
    assert space.fit_bounds(a, {"kept_ratio": (0.0, 0.01)}, rng) is None  # below the smallest: impossible


def test_bad_input(space):
    with pytest.raises(ValueError, match=r"kept_ratio: got 0\.1; valid: 0\.\d+ to 1\.000"):
        space.uniform(0.1)  # below what equal fractions reach: an error, not the nearest subnet
    arch = space.largest().params_dict()
    with pytest.raises(InvalidArchitectureError, match="masks.l0.mlp is 'zz'; valid: a hexadecimal bitmask"):
        space.from_params({**arch, "masks": {**arch["masks"], "l0.mlp": "zz"}})
    with pytest.raises(InvalidArchitectureError, match="masks.l0.mlp keeps"):
        space.from_params({**arch, "masks": {**arch["masks"], "l0.mlp": "1"}})
    with pytest.raises(InvalidArchitectureError, match="depth is 9; valid"):
        space.from_params({**arch, "depth": 9})
    with pytest.raises(InvalidArchitectureError, match="unknown key 'l0.heads'"):
        space.from_params({**arch, "l0.heads": 2})
    with pytest.raises(InvalidConfigError, match="space.calib_windows: got 100000000; valid: at most"):
        spaces.get_space("llm-subnet", parent="llm-tiny", calib_windows=100_000_000)
    with pytest.raises(InvalidConfigError, match="space.min_depth"):
        spaces.get_space("llm-subnet", parent="llm-tiny", min_depth=7)
    vit = spaces.get_space("vit-elastic", parent="vit-tiny")
    with pytest.raises(InvalidArchitectureError, match="the parent must be a Llama"):
        space.materialize(space.largest(), vit.parent())


def test_evolution_job_and_unmeetable_ratio(space, tmp_path):
    from nas import run_job
    from nas.errors import SpecError
    from nas.storage import Store

    spec = {"space": {"name": "llm-subnet", "parent": "llm-tiny"},
            "objectives": [{"name": "ppl", "direction": "minimize"}],
            "constraints": [{"name": "kept_ratio", "min": 0.55, "max": 0.65}],
            "strategy": {"name": "evolution", "population": 6, "top_k": 2, "mutants": 3, "crossovers": 2},
            "budget": {"evaluations": 12}, "seed": 0, "execution": {"backend": "inline"}}
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = run_job(spec, store=store)
    trials = result.trials
    assert len(trials) == 12 and all(t.feasible for t in trials)
    assert {t.source["op"] for t in trials} >= {"initial", "mutate"}
    assert max(t.source["generation"] for t in trials) >= 1
    start = space.uniform(0.6)
    assert trials[0].arch_id == start.arch_id  # generation 0 starts from the importance-initialised subnet
    assert min(t.values["ppl"] for t in trials) <= trials[0].values["ppl"]
    # the result's held-out perplexity before and after reformation, measured once and logged
    best = min(trials, key=lambda t: t.values["ppl"])
    final = [m for _, m in store.logs(result.job_id) if m.startswith("final metrics")]
    assert len(final) == 1 and f"trial {best.number} " in final[0], final
    before, after = (float(final[0].split(f"{k} ")[-1].split(",")[0]) for k in ("ppl_test", "ppl_reformed"))
    assert after < before
    assert "ppl_test" not in best.metrics  # not paid for every candidate
    bad = {**spec, "constraints": [{"name": "kept_ratio", "max": 0.01}]}
    with pytest.raises(SpecError, match=r"constraints\[0\].*kept_ratio ranges from"):
        run_job(bad, store=store)
    narrow = {**spec, "constraints": [{"name": "kept_ratio", "min": 0.601, "max": 0.6015}]}
    with pytest.raises(SpecError, match="no architecture of the space falls inside it"):
        run_job(narrow, store=store)
    total = space.count_params(space.parent_config)  # each range fine alone, not together
    clash = {**spec, "constraints": [{"name": "kept_ratio", "min": 0.6, "max": 0.65},
                                     {"name": "params", "max": int(0.55 * total)}]}
    with pytest.raises(SpecError, match=rf"0\.6 <= kept_ratio <= 0\.65; params <= {int(0.55 * total)}.*"
                                        r".*inside them all.*ranges that overlap"):
        run_job(clash, store=store)


def test_layer_removal_runs_dense_and_masked_alike():
    shallow = spaces.get_space("llm-subnet", parent="llm-tiny", reform=False, min_depth=1)
    arch = shallow.from_params({"depth": 1, "l0.attn": 2, "l0.mlp": 32})
    check_networks(shallow, shallow.parent().module, [arch, shallow.smallest()])
    assert len(shallow.materialize(arch).model.layers) == 1


# -- Hugging Face checkpoints: Llama and the Llama-shaped families --------------------------------
def _tiny_hf(family: str = "Llama", **kw):
    transformers = pytest.importorskip("transformers", reason="the Hugging Face importer is tested with transformers")
    torch.manual_seed(0)
    cfg = getattr(transformers, f"{family}Config")(**{
        "vocab_size": 300, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, **kw})
    model = getattr(transformers, f"{family}ForCausalLM")(cfg).eval()
    with torch.no_grad():  # random weights of some size, not the init's zeros and ones (norms, biases)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def bpe_tokenizer(path, vocab: int = 300):
    """A byte-level BPE trained by ``tokenizers`` on a little of the standard library, saved as ``path``."""
    tokenizers = pytest.importorskip("tokenizers")
    from spaces.llm.data import split_files

    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab, show_progress=False,
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((f.read_text(errors="replace") for f in split_files()["train"][:40]), trainer)
    tok.save(str(path))
    return tok


_LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 16}
FAMILIES = {  # name: (family, config): every one built by transformers, saved with save_pretrained
    "llama-mha": ("Llama", {}),
    "llama-tied": ("Llama", {"tie_word_embeddings": True}),
    "llama-gqa-llama3-rope": ("Llama", {"num_key_value_heads": 2, "rope_scaling": _LLAMA3}),
    "llama-mqa-head-dim-bias": ("Llama", {"num_key_value_heads": 1, "head_dim": 8, "attention_bias": True,
                                          "mlp_bias": True}),
    "llama-linear-rope": ("Llama", {"num_key_value_heads": 2, "rope_scaling": {"rope_type": "linear", "factor": 2.0}}),
    "llama-dynamic-rope": ("Llama", {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0},
                                     "max_position_embeddings": 16}),
    "llama-yarn-rope": ("Llama", {"num_key_value_heads": 2, "rope_scaling": {
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}}),
    "llama-longrope": ("Llama", {"rope_scaling": {"rope_type": "longrope", "long_factor": [1.5] * 8,
                                                  "short_factor": [1.1] * 8, "factor": 4.0,
                                                  "original_max_position_embeddings": 16}}),
    "mistral-window": ("Mistral", {"num_key_value_heads": 2, "sliding_window": 12}),
    "qwen2-bias": ("Qwen2", {"num_key_value_heads": 2}),
    "qwen3-qk-norm": ("Qwen3", {"num_key_value_heads": 2, "head_dim": 24, "tie_word_embeddings": True}),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_hf_families_import_with_the_same_logits_and_subnets_stay_valid(tmp_path, name):
    family, kw = FAMILIES[name]
    ref = _tiny_hf(family, **kw)
    ref.save_pretrained(tmp_path / name)
    p = spaces.import_parent("llm-subnet", f"hf-{name}", tmp_path / name, format="hf", overwrite=True)
    for length in (10, 40):  # 40: past the sliding window and the original context of the scaled ropes
        ids = torch.randint(0, 300, (2, length))
        with torch.no_grad():
            torch.testing.assert_close(p.module(ids), ref(ids).logits, atol=1e-4, rtol=0)
    space = spaces.get_space("llm-subnet", parent=f"hf-{name}", reform=False, window=32, tokenizer="bytes")
    cfg = space.parent_config
    assert space.scores("importance") is space.scores("importance")  # computed once, never re-derived
    assert len(space.largest().params_dict()["masks"]["l0.attn"]) == cfg.n_kv  # one mask per key/value head
    rng = random.Random(0)
    archs = [space.uniform(0.6), space.largest(), space.mutate(space.uniform(0.7), rng, p_mask=1.0)]
    check_networks(space, p.module, archs)  # masked parent == dense slice, params as reported
    if cfg.qk_norm:  # one q/k norm weight for all heads: they keep the same pairs
        arch = archs[0].params_dict()
        kept = space.masks(archs[0]).attn[0][0]
        moved = format(sum(1 << ((i + 1) % 12) for i in kept), "x")  # as many pairs, other ones
        other = dict(arch["masks"], **{"l0.attn": [arch["masks"]["l0.attn"][0], moved]})
        with pytest.raises(InvalidArchitectureError, match="masks.l0.attn differs between heads"):
            space.from_params({**arch, "masks": other})
    dense = space.materialize(archs[0])
    for layer in dense.model.layers:  # a pruned GQA layer is a GQA layer: every kv head keeps its query heads
        a = layer.self_attn
        assert a.k_proj.out_features == cfg.n_kv * a.head_dim and a.q_proj.out_features == cfg.heads * a.head_dim


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_and_sharded_checkpoints_import(tmp_path, dtype):
    transformers = pytest.importorskip("transformers")
    ref = _tiny_hf("Llama", num_key_value_heads=2).to(getattr(torch, dtype))
    ref.save_pretrained(tmp_path / "half", max_shard_size="100KB")  # several safetensors shards and their index
    assert (tmp_path / "half" / "model.safetensors.index.json").is_file()
    p = spaces.import_parent("llm-subnet", f"hf-{dtype}", tmp_path / "half", format="hf", overwrite=True)
    # the parent keeps the checkpoint's dtype (computed in it, as deployed): no float32 copy
    assert {t.dtype for t in p.module.state_dict().values()} == {getattr(torch, dtype)}
    as_fp32 = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "half", dtype=torch.float32).eval()
    ids = torch.randint(0, 300, (2, 20))
    with torch.no_grad():
        # the same weights: upcast, the same logits as transformers' to 1e-4
        torch.testing.assert_close(copy.deepcopy(p.module).float()(ids), as_fp32(ids).logits, atol=1e-4, rtol=0)
        # computed in half precision: within its rounding of the float32 logits
        half = p.module(ids).float()
        assert (half - as_fp32(ids).logits).abs().max() < 0.05 * as_fp32(ids).logits.abs().max()
    space = spaces.get_space("llm-subnet", parent=f"hf-{dtype}", window=16, tokenizer="bytes")
    fp32 = copy.deepcopy(space.parent().module).float()
    arch = space.uniform(0.6)
    ids = space._windows("fit")[0]
    from spaces.llm.train import perplexity
    assert space.evaluate(arch, ["ppl"])["ppl"] == pytest.approx(perplexity(fp32, ids, space.masks(arch)), rel=0.02)
    assert space.scores("importance").mlp[0].dtype == torch.float32


def test_gqa_importance_and_reformation(tmp_path):
    ref = _tiny_hf("Llama", num_key_value_heads=2, attention_bias=True)
    ref.save_pretrained(tmp_path / "gqa")
    spaces.import_parent("llm-subnet", "hf-gqa", tmp_path / "gqa", format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent="hf-gqa", window=32, tokenizer="bytes")
    scores = space.scores("importance")
    assert scores.attn[0].shape == (2, 8)  # (kv heads, pairs per head)
    arch = space.uniform(0.5)
    parent = space.parent().module
    ids = space.calibration_ids()[:4, :-1]
    with torch.no_grad():
        want = parent(ids)
        plain = space.materialize(arch, reform=False)(ids)
        reformed = space.materialize(arch, reform=True)(ids)
    # the closed-form reformation of O and down brings the pruned network's output towards the parent's
    assert (reformed - want).pow(2).mean() < 0.9 * (plain - want).pow(2).mean()


def _shared_pairs_arch(space, pairs, channels):
    """Every head of every layer keeps ``pairs``; every layer keeps ``channels``: a stock-exportable subnet."""
    hx = lambda idx: format(sum(1 << i for i in idx), "x")  # noqa: E731
    depth = len(space.parent_config.layers)
    return space.from_params({"depth": depth, **{f"l{n}.attn": len(pairs) for n in range(depth)},
                              **{f"l{n}.mlp": len(channels) for n in range(depth)},
                              "masks": {**{f"l{n}.attn": [hx(pairs)] * space.parent_config.n_kv for n in range(depth)},
                                        **{f"l{n}.mlp": hx(channels) for n in range(depth)}}})


@pytest.mark.parametrize("name", ["llama-gqa-llama3-rope", "qwen3-qk-norm", "qwen2-bias", "mistral-window",
                                  "llama-mqa-head-dim-bias", "llama-tied", "llama-yarn-rope", "llama-longrope"])
def test_hf_export_loads_in_transformers_with_the_same_logits(tmp_path, name):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    family, kw = FAMILIES[name]
    ref = _tiny_hf(family, **kw)
    ref.save_pretrained(tmp_path / name)
    bpe_tokenizer(tmp_path / name / "tokenizer.json")  # the parent's own tokenizer travels with the export
    spaces.import_parent("llm-subnet", f"hf-{name}", tmp_path / name, format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent=f"hf-{name}", reform=False, window=32)
    half = space.parent_config.head_dim // 2
    for pairs in (tuple(range(1, half, 2)), tuple(range(half))):  # pruned heads (longrope) and whole heads
        arch = _shared_pairs_arch(space, pairs, tuple(range(0, 96, 2)))
        out = spaces.export_architecture(space, arch, tmp_path / "export", format="hf", force=True)
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {
            p.name for p in out.iterdir()}
        hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()  # no code of ours
        assert type(hf).__name__ == type(ref).__name__
        ids = torch.randint(0, 300, (2, 40))
        with torch.no_grad():
            theirs, loaded, subnet = hf(ids).logits, spaces.load_architecture(out)(ids), space.materialize(arch)(ids)
        torch.testing.assert_close(theirs, loaded, atol=1e-5, rtol=0)
        torch.testing.assert_close(theirs, subnet, atol=1e-5, rtol=0)
        assert sum(p.numel() for p in hf.parameters()) == space.evaluate(arch, ["params"])["params"]
    # per-head importance masks differ between heads: no stock config holds them, so the directory
    # carries its modeling file (test_hf_export_of_differing_layers_loads_with_its_modeling_file)
    import json

    from spaces import ExportError

    out = spaces.export_architecture(space, space.uniform(0.6), tmp_path / "remote", format="hf")
    assert json.loads((out / "config.json").read_text())["model_type"] == "nas_llama"
    assert (out / "modeling_nas_llama.py").is_file() and spaces.load_architecture(out).manifest["trust_remote_code"]
    vit = spaces.get_space("vit-elastic", parent="vit-tiny")
    with pytest.raises(ExportError, match="hf: vit-elastic networks are not Hugging Face models; .*llm-subnet"):
        spaces.export_architecture(vit, vit.largest(), tmp_path / "vit", format="hf")


def test_a_dynamic_rope_parent_exports_whole_heads_and_refuses_pruned_ones(tmp_path):
    transformers = pytest.importorskip("transformers")
    family, kw = FAMILIES["llama-dynamic-rope"]
    _tiny_hf(family, **kw).save_pretrained(tmp_path / "dyn")
    spaces.import_parent("llm-subnet", "hf-dyn", tmp_path / "dyn", format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent="hf-dyn", reform=False, window=32, tokenizer="bytes")
    half = space.parent_config.head_dim // 2
    whole = spaces.export_architecture(space, _shared_pairs_arch(space, tuple(range(half)), tuple(range(48))),
                                       tmp_path / "whole", format="hf")
    ids = torch.randint(0, 300, (1, 40))  # past max_position_embeddings (16): the dynamic scaling is on
    with torch.no_grad():
        torch.testing.assert_close(transformers.AutoModelForCausalLM.from_pretrained(whole)(ids).logits,
                                   spaces.load_architecture(whole)(ids), atol=1e-5, rtol=0)
    from spaces import ExportError

    with pytest.raises(ExportError, match="'dynamic' .* no stock rope for it"):
        spaces.export_architecture(space, _shared_pairs_arch(space, tuple(range(2)), tuple(range(48))),
                                   tmp_path / "pruned", format="hf")
    # layers that differ: nas_llama's rotary tables are static, so a dynamic rope is refused there too
    with pytest.raises(ExportError, match="hf: the parent's rope is 'dynamic' .* layers differ \\(layer "):
        spaces.export_architecture(space, _varied_arch(space, 2), tmp_path / "varied", format="hf")
    assert not (tmp_path / "pruned").exists() and not (tmp_path / "varied").exists()


def _varied_arch(space, depth: int | None = None):
    """A subnet whose layers differ every way llm-subnet allows: its own MLP width and pair count
    per layer, its own pairs per key/value head (the same in all heads where q/k norms are shared),
    fewer layers than the parent."""
    p, choices = space.parent_config, space.build_choices()
    depth = depth or len(p.layers) - 1
    hx = lambda idx: format(sum(1 << i for i in idx), "x")  # noqa: E731
    rng = random.Random(depth)
    params, masks = {"depth": depth}, {}
    for n in range(depth):
        attn, mlp = choices[f"l{n}.attn"], choices[f"l{n}.mlp"]
        k, c = attn[-2 - 2 * n % len(attn)], mlp[-1 - 3 * (n + 1) % len(mlp)]  # other counts in every layer
        half = p.head_dim // 2  # head h keeps k pairs from its own offset on: other pairs in every head
        heads = [sorted((3 * h + n + i) % half for i in range(k)) for h in range(p.n_kv)]
        masks[f"l{n}.attn"] = [hx(heads[0] if p.qk_norm else h) for h in heads]
        masks[f"l{n}.mlp"] = hx(rng.sample(range(p.layers[n].ffn), c))
        params |= {f"l{n}.attn": k, f"l{n}.mlp": c}
    return space.from_params({**params, "masks": masks})


# the families the stock export covers, each with what its layers add: GQA and a llama3 rope, MQA
# with biases and an explicit head_dim, Qwen2's q/k/v biases, Qwen3's q/k norms with tied embeddings,
# Mistral's window (12, shorter than the 40 tokens compared), yarn, and longrope past its switch
REMOTE = ["llama-gqa-llama3-rope", "llama-mqa-head-dim-bias", "qwen2-bias", "qwen3-qk-norm", "mistral-window",
          "llama-yarn-rope", "llama-longrope"]


@pytest.mark.parametrize("name", REMOTE)
def test_hf_export_of_differing_layers_loads_with_its_modeling_file(tmp_path, name):
    import json

    transformers = pytest.importorskip("transformers")
    family, kw = FAMILIES[name]
    _tiny_hf(family, **{**kw, "num_hidden_layers": 3}).save_pretrained(tmp_path / name)
    spaces.import_parent("llm-subnet", f"hf-{name}-3", tmp_path / name, format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent=f"hf-{name}-3", reform=False, window=32, tokenizer="bytes")
    arch = _varied_arch(space)
    sub = space.subnet(arch)
    assert len({la.ffn for la in sub.layers}) == 2 and len({la.head_dim for la in sub.layers}) == 2
    if not space.parent_config.qk_norm and space.parent_config.n_kv > 1:  # and heads keep other pairs
        assert all(len(set(la.pairs)) > 1 for la in sub.layers)
    out = spaces.export_architecture(space, arch, tmp_path / "export", format="hf")
    config = json.loads((out / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_nas_llama.NasLlamaForCausalLM"
    assert config["intermediate_size"] == [la.ffn for la in sub.layers]
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    assert type(hf).__name__ == "NasLlamaForCausalLM"
    loaded = spaces.load_architecture(out)
    for length in (10, 40):  # 40: past the window and the original context of the scaled ropes
        ids = torch.randint(0, 300, (2, length))
        with torch.no_grad():
            theirs, ours = hf(ids).logits, loaded(ids)
            masked = space.run_subnet(None, arch, ids)  # the parent run with the masks, no weight copied
        torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
        torch.testing.assert_close(theirs, masked, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in hf.parameters()) == space.evaluate(arch, ["params"])["params"]
    with torch.no_grad():  # labels: the next-token loss of those logits
        loss = hf(ids, labels=ids).loss
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(ours[:, :-1].reshape(-1, 300),
                                                                        ids[:, 1:].reshape(-1)), atol=1e-5, rtol=0)


def test_the_modeling_file_loads_without_this_package_decodes_and_pads(tmp_path):
    """What a user of the directory gets: no import of ours, a KV-cache decode that gives the
    full forward's greedy tokens, and a left-padded batch that gives each row's own logits."""
    import subprocess
    import sys

    transformers = pytest.importorskip("transformers")
    family, kw = FAMILIES["mistral-window"]
    _tiny_hf(family, **{**kw, "num_hidden_layers": 3}).save_pretrained(tmp_path / "par")
    spaces.import_parent("llm-subnet", "hf-remote-decode", tmp_path / "par", format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent="hf-remote-decode", reform=False, window=32, tokenizer="bytes")
    out = spaces.export_architecture(space, _varied_arch(space), tmp_path / "export", format="hf")
    ids = torch.randint(0, 300, (1, 10))
    # `spaces` unimportable: the directory's own files are all transformers needs
    code = ("import sys, torch; sys.modules['spaces'] = None; from transformers import AutoModelForCausalLM; "
            f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval(); "
            f"print(m(torch.tensor({ids.tolist()})).logits.sum().item())")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    ours = spaces.load_architecture(out)
    with torch.no_grad():
        assert float(p.stdout.split()[-1]) == pytest.approx(ours(ids).sum().item(), abs=1e-3)
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True).eval()
    greedy = ids
    with torch.no_grad():
        for _ in range(8):  # 18 tokens: the cached decode runs past the window of 12
            greedy = torch.cat((greedy, ours(greedy)[:, -1:].argmax(-1)), dim=1)
        for use_cache in (True, False):
            got = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                              use_cache=use_cache, pad_token_id=0)
            assert got.tolist() == greedy.tolist()
        # a left-padded batch: the padded row's real tokens get their unpadded logits
        short = ids[:, 4:]
        batch = torch.cat((ids, torch.cat((torch.zeros(1, 4, dtype=torch.long), short), dim=1)))
        mask = torch.ones_like(batch)
        mask[1, :4] = 0
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        padded = hf(batch, attention_mask=mask, position_ids=pos).logits
        torch.testing.assert_close(padded[0], ours(ids)[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(padded[1, 4:], ours(short)[0], atol=1e-5, rtol=0)


def test_hf_export_carries_the_parents_generation_config(tmp_path):
    import json

    pytest.importorskip("transformers")
    _tiny_hf("Llama", num_hidden_layers=3).save_pretrained(tmp_path / "par")
    mine = {"bos_token_id": 1, "eos_token_id": [2, 7], "do_sample": True, "temperature": 0.6, "top_p": 0.9}
    (tmp_path / "par" / "generation_config.json").write_text(json.dumps(mine))
    spaces.import_parent("llm-subnet", "hf-gen", tmp_path / "par", format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent="hf-gen", reform=False, window=32, tokenizer="bytes")
    half = space.parent_config.head_dim // 2
    stock = _shared_pairs_arch(space, tuple(range(half)), tuple(range(48)))
    for arch, name in ((stock, "stock"), (_varied_arch(space), "remote")):  # both kinds of directory
        out = spaces.export_architecture(space, arch, tmp_path / name, format="hf")
        assert json.loads((out / "generation_config.json").read_text()) == mine
    (tmp_path / "par" / "generation_config.json").unlink()  # none: a greedy one, as before
    out = spaces.export_architecture(space, stock, tmp_path / "fallback", format="hf")
    assert json.loads((out / "generation_config.json").read_text()) == {"_from_model_config": True,
                                                                        "do_sample": False}


@pytest.mark.slow
def test_a_uniform_layers_search_exports_a_stock_checkpoint_from_the_cli(tmp_path):
    """The user's path: a save_pretrained directory, a job that asks for uniform layers (what
    vLLM and llama.cpp need), `nas export --format hf`, transformers loads the result."""
    import json
    import os
    import subprocess
    import sys

    from nas import run_job
    from nas.storage import Store

    transformers = pytest.importorskip("transformers")
    ref = _tiny_hf("Llama", num_key_value_heads=2, num_hidden_layers=3)
    ref.save_pretrained(tmp_path / "smol")
    spaces.import_parent("llm-subnet", "hf-smol", tmp_path / "smol", format="hf", overwrite=True)
    db = f"sqlite:///{tmp_path / 'nas.db'}"
    spec = {"space": {"name": "llm-subnet", "parent": "hf-smol", "window": 32, "uniform_layers": True,
                      "tokenizer": "bytes"},
            "objectives": [{"name": "ppl", "direction": "minimize"}],
            "constraints": [{"name": "kept_ratio", "min": 0.5, "max": 0.7}],
            "strategy": {"name": "evolution", "population": 6, "top_k": 2, "mutants": 3, "crossovers": 2},
            "budget": {"evaluations": 10}, "seed": 0, "execution": {"backend": "inline"}}
    result = run_job(spec, store=Store(db))
    space = spaces.get_space("llm-subnet", parent="hf-smol", window=32, uniform_layers=True, tokenizer="bytes")
    for trial in result.trials:  # every candidate is uniform: one width per model, one set of pairs
        p = spaces.Architecture.from_dict(trial.arch).params_dict()
        assert len({p[f"l{n}.mlp"] for n in range(p["depth"])}) == 1
        assert len({h for n in range(p["depth"]) for h in p["masks"][f"l{n}.attn"]}) == 1
    best = min(result.trials, key=lambda t: t.values["ppl"])
    out = tmp_path / "export"
    p = subprocess.run([sys.executable, "-m", "nas.cli", "export", result.job_id, best.arch_id, "--format", "hf",
                        "--out", str(out)], env={**os.environ, "NAS_DATABASE_URL": db},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "AutoModelForCausalLM.from_pretrained" in p.stdout
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert json.loads((out / "config.json").read_text())["num_key_value_heads"] == 2
    ids = torch.randint(0, 300, (2, 24))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, spaces.load_architecture(out)(ids), atol=1e-5, rtol=0)
    with pytest.raises(InvalidArchitectureError, match="layers differ; this space has uniform_layers"):
        space.validate(spaces.get_space("llm-subnet", parent="hf-smol", window=32, tokenizer="bytes").uniform(0.6))
    with pytest.raises(InvalidConfigError, match="space.tokenizer: got 'auto'; valid: a tokenizer.json or folder "
                                                 "\\(the parent 'hf-smol' was imported from .* no tokenizer files"):
        spaces.get_space("llm-subnet", parent="hf-smol")  # a BPE-sized vocabulary scored on bytes: refused
    # over HTTP: the same directory as a zip
    import io
    import zipfile

    from fastapi.testclient import TestClient

    from api import Settings, create_app

    store = Store(db)
    reader, _ = store.create_token("reader", ["read"])
    client = TestClient(create_app(Settings(database_url=db), store))
    r = client.get(f"/api/v1/jobs/{result.job_id}/architectures/{best.arch_id}/export?format=hf",
                   headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 200, r.text
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path / "from-api")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "from-api").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, hf(ids).logits, atol=0, rtol=0)


def test_the_parents_tokenizer_and_the_users_text(tmp_path):
    """A BPE parent is scored on the user's text, tokenized by its own tokenizer: per token and per byte."""
    import json

    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    ref = _tiny_hf("Llama", num_key_value_heads=2)
    ref.save_pretrained(tmp_path / "bpe")
    tok = bpe_tokenizer(tmp_path / "bpe" / "tokenizer.json")
    spaces.import_parent("llm-subnet", "hf-bpe", tmp_path / "bpe", format="hf", overwrite=True)
    from spaces.llm.data import split_files

    docs = [f.read_text(errors="replace") for f in split_files()["test"][:30]]
    (tmp_path / "calib.txt").write_text("\n".join(docs[:10]))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"body": d, "id": i}) + "\n" for i, d in enumerate(docs[10:20])))
    pq.write_table(pa.table({"body": docs[20:30]}), tmp_path / "fit.parquet")
    data = {"calibration_data": str(tmp_path / "calib.txt"), "test_data": str(tmp_path / "test.jsonl"),
            "fit_data": str(tmp_path / "fit.parquet"), "text_field": "body"}
    space = spaces.get_space("llm-subnet", parent="hf-bpe", window=32, calib_windows=4, fit_windows=4,
                             test_windows=4, **data)
    assert space.corpus.tokenizer.name.endswith("tokenizer.json")  # found beside the imported weights
    ids, nbytes = space.corpus.tokens("test")
    first = tok.encode(docs[10]).ids
    assert ids[:len(first)].tolist() == first  # the parent's own tokens, not bytes
    assert abs(float(nbytes.sum()) - sum(len(d.encode()) for d in docs[10:20])) < 1e-3 * nbytes.sum()
    m = space.evaluate(space.largest(), ["ppl", "ppl_test", "ppl_test_per_byte"])
    wins, wbytes = space.corpus.windows("test", 4, 32)
    with torch.no_grad():
        logits = ref(wins[:, :-1]).logits
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), wins[:, 1:].reshape(-1), reduction="sum").item()
    assert m["ppl_test"] == pytest.approx(math.exp(nll / wins[:, 1:].numel()), rel=1e-4)  # what transformers says
    assert m["ppl_test_per_byte"] == pytest.approx(math.exp(nll / float(wbytes.sum())), rel=1e-6)
    assert m["ppl_test_per_byte"] < m["ppl_test"]  # a token spans more than a byte
    # bad input: one clear error naming the field
    bad = {
        "test_data": ({**data, "test_data": str(tmp_path / "missing.txt")}, "space.test_data: got .*missing.txt"),
        "field": ({**data, "text_field": "text", "fit_data": None}, r"space.test_data: got .*test.jsonl:1.*a text field 'text'.*\['body', 'id'\]"),
        "parquet": ({**data, "test_data": str(tmp_path / "calib.txt"), "text_field": "nope", "fit_data": str(tmp_path / "fit.parquet")},
                    "space.fit_data: got .*fit.parquet.*a column 'nope'"),
        "short": ({**data, "test_windows": 10_000}, r"space.test_windows: got 10000; valid: at most \d+ windows of 33 tokens"),
        "no test": ({k: v for k, v in data.items() if k != "test_data"}, "space.test_data: got None; valid: a held-out"),
        "vocab": ({**data, "tokenizer": str(_big_tokenizer(tmp_path))}, "space.tokenizer: .* at most 300 tokens"),
        "empty": ({**data, "test_data": str((tmp_path / "empty").mkdir() or tmp_path / "empty")}, "holds none"),
    }
    for name, (config, message) in bad.items():
        with pytest.raises(InvalidConfigError, match=message):
            spaces.get_space("llm-subnet", parent="hf-bpe", window=32, calib_windows=4, fit_windows=4,
                             test_windows=config.pop("test_windows", 4), **config)
    # the byte-level default is unchanged: the built-in corpus in bytes
    tiny = spaces.get_space("llm-subnet", parent="llm-tiny")
    assert tiny.corpus.tokenizer.name == "bytes"
    with pytest.raises(InvalidConfigError, match="space.tokenizer: got 'bytes'; valid: a tokenizer of at most 200"):
        _byte_space_of_small_vocab(tmp_path)  # a byte-level tokenizer needs 256 ids


def test_datasets_folders_and_a_tokenizer_only_autotokenizer_reads(tmp_path):
    """A ``datasets`` save_to_disk folder as the job's text (written by datasets, read with
    pyarrow); a GPT-2-style tokenizer folder without tokenizer.json (vocab.json + merges.txt),
    read with AutoTokenizer."""
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    from spaces.llm.data import split_files

    ref = _tiny_hf("Llama", num_key_value_heads=2, vocab_size=304)  # GPT2Tokenizer adds <|endoftext|>
    ref.save_pretrained(tmp_path / "m")
    tok = bpe_tokenizer(tmp_path / "tokenizer.json")
    words = tmp_path / "words"
    words.mkdir()
    tok.model.save(str(words))  # vocab.json + merges.txt
    transformers.GPT2Tokenizer(str(words / "vocab.json"), str(words / "merges.txt")).save_pretrained(tmp_path / "slow")
    (tmp_path / "slow" / "tokenizer.json").unlink(missing_ok=True)  # transformers 5 writes only that one
    for f in ("vocab.json", "merges.txt"):
        (tmp_path / "slow" / f).write_bytes((words / f).read_bytes())
    assert (tmp_path / "slow" / "vocab.json").is_file() and not (tmp_path / "slow" / "tokenizer.json").exists()
    spaces.import_parent("llm-subnet", "hf-ds", tmp_path / "m", format="hf", overwrite=True)
    docs = [f.read_text(errors="replace") for f in split_files()["test"][:20]]
    d = datasets.Dataset.from_dict({"content": docs[:10], "n": list(range(10))})
    d.save_to_disk(str(tmp_path / "calib"))
    datasets.DatasetDict({"train": d, "test": datasets.Dataset.from_dict({"content": docs[10:]})}).save_to_disk(
        str(tmp_path / "dd"))
    kw = dict(window=32, calib_windows=4, fit_windows=4, test_windows=4, text_field="content",
              tokenizer=str(tmp_path / "slow"))
    space = spaces.get_space("llm-subnet", parent="hf-ds", calibration_data=str(tmp_path / "calib"),
                             test_data=str(tmp_path / "dd" / "test"), **kw)
    assert space.corpus.tokenizer._impl[0] == "transformers"  # no tokenizer.json: AutoTokenizer read the folder
    ids, _ = space.corpus.tokens("calibration")
    want = transformers.AutoTokenizer.from_pretrained(tmp_path / "slow")(docs[0], add_special_tokens=False)["input_ids"]
    assert ids[:len(want)].tolist() == want  # the dataset's first document, in AutoTokenizer's tokens
    assert space.evaluate(space.uniform(0.6), ["ppl_test"])["ppl_test"] > 1
    with pytest.raises(InvalidConfigError, match=r"space.test_data: got .*dd'; valid: one split's folder of this "
                                                 r"DatasetDict \(test, train\)"):
        spaces.get_space("llm-subnet", parent="hf-ds", calibration_data=str(tmp_path / "calib"),
                         test_data=str(tmp_path / "dd"), **kw)
    with pytest.raises(InvalidConfigError, match=r"space.calibration_data: got .*calib'; valid: a dataset with a "
                                                 r"column 'text' .*columns: content, n"):
        spaces.get_space("llm-subnet", parent="hf-ds", calibration_data=str(tmp_path / "calib"),
                         test_data=str(tmp_path / "dd" / "test"), **{**kw, "text_field": "text"})


def _big_tokenizer(tmp_path):
    bpe_tokenizer(tmp_path / "big.json", vocab=400)
    return tmp_path / "big.json"


def _byte_space_of_small_vocab(tmp_path):
    ref = _tiny_hf("Llama", vocab_size=200)
    ref.save_pretrained(tmp_path / "small-vocab")
    spaces.import_parent("llm-subnet", "hf-small-vocab", tmp_path / "small-vocab", format="hf", overwrite=True)
    return spaces.get_space("llm-subnet", parent="hf-small-vocab", tokenizer="bytes")


def test_memory_mb_counts_the_weights_and_kv_cache_a_decode_really_holds(tmp_path):
    ref = _tiny_hf("Llama", num_key_value_heads=2, num_hidden_layers=3)
    ref.save_pretrained(tmp_path / "m")
    spaces.import_parent("llm-subnet", "hf-mem", tmp_path / "m", format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent="hf-mem", window=32, memory_context=48, memory_batch=3, tokenizer="bytes",
                             memory_dtype="float32", reform=False)
    for arch in (space.largest(), space.uniform(0.6)):
        net = space.materialize(arch)
        cache = [[] for _ in net.model.layers]
        net.step(torch.randint(0, 300, (3, 40)), cache)  # prefill 40, then decode 8: 48 tokens cached
        for _ in range(8):
            net.step(torch.randint(0, 300, (3, 1)), cache)
        storages = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in net.parameters()}
        held = sum(storages.values()) + sum(t.untyped_storage().nbytes() for c in cache for t in c)
        assert space.evaluate(arch, ["memory_mb"])["memory_mb"] == pytest.approx(held / 2**20, rel=1e-9)
    lo, hi = space.static_range("memory_mb")  # a constraint on it is checked before anything runs
    assert lo < space.evaluate(space.uniform(0.6), ["memory_mb"])["memory_mb"] < hi
    with pytest.raises(InvalidConfigError, match="space.memory_dtype: got 'fp8'; valid: float32, float16"):
        spaces.get_space("llm-subnet", parent="hf-mem", memory_dtype="fp8", tokenizer="bytes")


@pytest.mark.parametrize("kw", [dict(num_key_value_heads=2), dict(model="Mistral", sliding_window=20)],
                         ids=["llama-gqa", "mistral-window"])
def test_decode_step_is_the_last_position_of_a_full_forward(tmp_path, kw):
    from spaces.llm.model import DecodeStep

    kw = dict(kw)
    ref = _tiny_hf(kw.pop("model", "Llama"), **kw)
    ref.save_pretrained(tmp_path / "m")
    spaces.import_parent("llm-subnet", "hf-dec", tmp_path / "m", format="hf", overwrite=True)
    space = spaces.get_space("llm-subnet", parent="hf-dec", window=16, tokenizer="bytes")
    net = space.materialize(space.uniform(0.6), reform=False)
    step = DecodeStep(net, context=30, batch=2)
    new = torch.randint(0, 300, (2, 1))
    with torch.no_grad():
        want = net(torch.cat((step.context_ids, new), dim=1))[:, -1:]
        torch.testing.assert_close(step(new), want, atol=1e-5, rtol=0)
        torch.testing.assert_close(step(new), want, atol=1e-5, rtol=0)  # the cache is not grown by a call


def test_prefill_and_decode_latency_are_objectives_of_a_job(space, tmp_path):
    from nas import run_job
    from nas.storage import Store

    spec = {"space": {"name": "llm-subnet", "parent": "llm-tiny", "window": 32, "memory_context": 64},
            "objectives": [{"name": "ppl"}, {"name": "decode_ms", "device": "cpu-eager"}],
            "constraints": [{"name": "latency_ms", "device": "cpu-ort", "max": 1000.0},
                            {"name": "kept_ratio", "min": 0.5}],
            "strategy": {"name": "random"}, "budget": {"evaluations": 2}, "seed": 0,
            "execution": {"backend": "inline"}}
    result = run_job(spec, store=Store(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert len(result.trials) == 2
    for t in result.trials:
        assert t.values["decode_ms@cpu-eager"] > 0 and 0 < t.metrics["latency_ms@cpu-ort"] < 1000 and t.feasible
    info = spaces.get_space("llm-subnet", parent="llm-tiny", window=32, memory_context=64).metrics()
    assert "64 tokens in the KV cache" in info["decode_ms"].description and "cpu-ort" in info["decode_ms"].devices


def test_hf_import_bad_input(tmp_path):
    with pytest.raises(CheckpointError, match="is not a directory"):
        spaces.import_parent("llm-subnet", "x", tmp_path / "missing", format="hf")
    ref = _tiny_hf("Llama", hidden_act="gelu")
    ref.save_pretrained(tmp_path / "gelu")
    with pytest.raises(CheckpointError, match="hidden_act is 'gelu'; llm-subnet imports 'silu'"):
        spaces.import_parent("llm-subnet", "x", tmp_path / "gelu", format="hf")
    ref = _tiny_hf("Llama")
    ref.save_pretrained(tmp_path / "ok")
    import json

    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    for change, message in (({"model_type": "gpt2"}, "model_type is 'gpt2'; llm-subnet imports 'llama'"),
                            ({"num_key_value_heads": 3}, "num_key_value_heads is 3; valid: a divisor of "
                                                         "num_attention_heads"),
                            ({"layer_types": ["sliding_attention", "full_attention"]},
                             r"layer_types has \['sliding_attention'\]"),
                            ({"rope_parameters": {"rope_type": "warp", "rope_theta": 1e4}},
                             "rope_type is 'warp'; valid: default, dynamic, linear"),
                            ({"head_dim": 7}, "head_dim is 7; llm-subnet imports an even head_dim"),
                            ({"num_hidden_layers": "two"}, "num_hidden_layers is 'two'; valid: a positive integer"),
                            ({"rms_norm_eps": "small"}, "rms_norm_eps is 'small'; valid: a positive number"),
                            ({"rope_parameters": {"full_attention": {"rope_type": "default"}}},
                             "rope_parameters per layer type"),
                            ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}},
                             "rope_parameters .* cannot be computed by transformers")):
        (tmp_path / "ok" / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(CheckpointError, match=message):
            spaces.import_parent("llm-subnet", "x", tmp_path / "ok", format="hf")
    (tmp_path / "ok" / "config.json").write_text(json.dumps({**cfg, "num_key_value_heads": 2}))
    with pytest.raises(CheckpointError, match=r"k_proj.weight. has shape \(64, 64\); the network needs \(32, 64\)"):
        spaces.import_parent("llm-subnet", "x", tmp_path / "ok", format="hf")  # the tensors are MHA-shaped
    (tmp_path / "ok" / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file, save_file

    sd = load_file(tmp_path / "ok" / "model.safetensors")
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, tmp_path / "ok" / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing 1 tensor.*model.layers.1.mlp.up_proj.weight"):
        spaces.import_parent("llm-subnet", "x", tmp_path / "ok", format="hf")
    assert "x" not in spaces.list_parents()  # every refusal above stored nothing
