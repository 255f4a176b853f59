"""A found ``llm-subnet`` architecture as a Hugging Face directory: ``config.json`` of the
parent's family (``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM``,
``Qwen3ForCausalLM``), ``model.safetensors``, ``generation_config.json`` and the parent's
tokenizer files, which ``AutoModelForCausalLM.from_pretrained(dir)`` loads without this
package.

A stock config has one width per model: every kept layer must have the same MLP width and
every head of every layer the same kept rotary pairs. Two facts of the subnet need
translating, both exactly:

* its attention scores keep the parent's ``1 / sqrt(head_dim)``; a stock layer uses its own
  (smaller) head_dim, so the queries are scaled by ``sqrt(kept / parent)`` (the q_proj rows,
  or Qwen3's q_norm weight, which comes after the projection);
* its heads rotate their kept pairs at the parent's frequencies; a stock rotary embedding
  computes frequencies from the head_dim, so a pruned head is written as ``longrope`` with
  per-frequency factors that give back the parent's (``factor`` 1: no attention rescaling
  beyond the parent's own; a longrope parent's short and long sets both). A head that keeps
  every pair keeps the parent's rope as it is. A ``dynamic`` rope changes with the length,
  so pruned heads of such a parent are refused.

Layers that differ (per-layer MLP widths, per-layer or per-head kept rotary pairs, as DeciLM
and Nemotron-NAS checkpoints have per-layer widths) are written as ``nas_llama``: the
directory carries its modeling code (:mod:`spaces.llm.hf_remote`, torch and transformers
only), named in ``config.json``'s ``auto_map``, so that
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` loads it. Its weights
are the subnet's as they are (Llama's names, no rescaling: the model scales scores by the
parent's head_dim itself) and its config holds the parent's rotary frequencies per pair as
:func:`~spaces.llm.model.rope_frequencies` computes them (a longrope parent's short and long
tables and where they switch). A ``dynamic`` rope's frequencies are a function of the length
with no table to store: such a parent's differing layers are refused, by name.

Either way ``generation_config.json`` is the parent's own when its directory has one.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import torch

from .._errors import ExportError
from . import hf_remote
from .hf import ARCHITECTURES, config_from_hf
from .model import Llama, LlamaConfig, rope_frequencies

__all__ = ["hf_config", "remote_config", "hf_directory", "TOKENIZER_FILES"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


def _difference(cfg: LlamaConfig) -> str | None:
    """The first layer or head whose shape differs from layer 0 head 0's, in words; ``None``
    when every layer and head has the same (a stock config holds the network)."""
    first = cfg.layers[0]
    pairs = first.pairs[0]
    for n, la in enumerate(cfg.layers):
        if la.ffn != first.ffn:
            return f"layer {n} keeps {la.ffn} MLP channels, layer 0 keeps {first.ffn}"
        for h, p in enumerate(la.pairs):
            if p != pairs:
                return f"layer {n} head {h} keeps rotary pairs {list(p)}, layer 0 head 0 keeps {list(pairs)}"
    return None


def _uniform(cfg: LlamaConfig) -> tuple[int, tuple[int, ...]]:
    """``(ffn, kept pairs)`` shared by every layer and head, or an :class:`ExportError` naming
    the first layer or head that differs."""
    diff = _difference(cfg)
    if diff is not None:
        what = "width for every layer" if "MLP" in diff else "rotary embedding for every head"
        raise ExportError("format", f"hf: {diff}; a stock Hugging Face config has one {what} (hf_directory "
                          "writes such a subnet with its modeling file, loaded with trust_remote_code=True)")
    return cfg.layers[0].ffn, cfg.layers[0].pairs[0]


def _rope_kind(cfg: LlamaConfig) -> str:
    params = cfg.rope_parameters or {}
    return str(params.get("rope_type", params.get("type", "default")))


def hf_config(sub: LlamaConfig) -> tuple[dict[str, Any], LlamaConfig, float]:
    """``(config.json, the same network as a dense LlamaConfig, query scale)`` of a dense subnet config."""
    ffn, pairs = _uniform(sub)
    kept = 2 * len(pairs)
    family = sub.family
    c: dict[str, Any] = {
        "architectures": [ARCHITECTURES[family]], "model_type": family, "vocab_size": sub.vocab,
        "hidden_size": sub.dim, "intermediate_size": ffn, "num_hidden_layers": len(sub.layers),
        "num_attention_heads": sub.heads, "num_key_value_heads": sub.n_kv, "head_dim": kept,
        "hidden_act": "silu", "rms_norm_eps": sub.eps, "tie_word_embeddings": sub.tie_embeddings,
        "max_position_embeddings": sub.max_positions, "torch_dtype": "float32", "use_cache": True,
    }
    if family == "llama":
        if sub.qkv_bias != sub.o_bias:
            raise ExportError("format", "hf: Llama's attention_bias sets q, k, v and o biases together")
        c.update(attention_bias=sub.qkv_bias, mlp_bias=sub.mlp_bias)
    elif family == "mistral":
        c["sliding_window"] = sub.sliding_window
    elif family == "qwen3":
        c["attention_bias"] = sub.qkv_bias
    if family != "llama" and sub.mlp_bias:
        raise ExportError("format", f"hf: {family} has no MLP biases")
    if family in ("qwen2", "qwen3"):
        c["use_sliding_window"] = False
    if kept == sub.head_dim:  # every pair kept: the parent's rotary embedding as it is
        rope = dict(sub.rope_parameters or {"rope_type": "default"})
        rope["rope_theta"] = sub.rope_theta
    else:
        params = sub.rope_parameters or {}
        kind = _rope_kind(sub)
        if kind == "dynamic":  # its frequencies change with the length: no static table holds them
            raise ExportError("format", "hf: the parent's rope is 'dynamic' (NTK scaling by sequence length); a "
                              "subnet that prunes head channels has no stock rope for it (keep every pair: "
                              "lN.attn at its largest, or export as safetensors)")
        # longrope's inv_freq[j] = 1 / (factor_j * theta ** (2j / kept)): factors that give back the
        # parent's frequency of pair pairs[j]; a longrope parent's own short and long sets both carry
        # over, switching where the parent's do (original_max_position_embeddings)
        orig = int(params.get("original_max_position_embeddings") or sub.max_positions) if kind == "longrope" \
            else sub.max_positions

        def factors(seq_len: int) -> list[float]:
            inv, _ = rope_frequencies(sub, seq_len)
            return [float(1.0 / (inv[i].double() * sub.rope_theta ** (2 * j / kept))) for j, i in enumerate(pairs)]

        _, scale = rope_frequencies(sub, 1)
        rope = {"rope_type": "longrope", "rope_theta": sub.rope_theta, "factor": 1.0, "attention_factor": scale,
                "original_max_position_embeddings": orig, "short_factor": factors(1),
                "long_factor": factors(orig + 1)}
        c["original_max_position_embeddings"] = orig  # where transformers 4 reads it
    c["rope_parameters"] = rope
    # transformers 4 reads rope_theta + rope_scaling; 5 reads rope_parameters (and accepts both)
    c["rope_theta"] = sub.rope_theta
    c["rope_scaling"] = None if rope.get("rope_type") == "default" else {k: v for k, v in rope.items() if k != "rope_theta"}
    dense = config_from_hf(c)
    return c, dense, math.sqrt(kept / sub.head_dim)


@torch.no_grad()
def hf_state_dict(net: Llama, dense: LlamaConfig, q_scale: float) -> dict[str, torch.Tensor]:
    """The subnet's weights in the stock layout: its rows are already in each head's
    rotate_half order; only the queries are rescaled."""
    sd = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    for n in range(len(dense.layers)):
        pre = f"model.layers.{n}.self_attn."
        if dense.qk_norm:  # the norm comes after q_proj: its weight carries the scale
            sd[pre + "q_norm.weight"] *= q_scale
        else:
            sd[pre + "q_proj.weight"] *= q_scale
            if pre + "q_proj.bias" in sd:
                sd[pre + "q_proj.bias"] *= q_scale
    return sd


def remote_config(sub: LlamaConfig) -> dict[str, Any]:
    """``config.json`` of a dense subnet whose layers differ, for the ``nas_llama`` modeling
    code the directory carries (:mod:`spaces.llm.hf_remote`): the network as it is, with the
    parent's rotary frequencies per pair as this package computes them."""
    kind = _rope_kind(sub)
    if kind == "dynamic":  # NTK scaling recomputes the frequencies from the length: no table holds them
        raise ExportError("format", "hf: the parent's rope is 'dynamic' (NTK scaling by sequence length) and the "
                          f"subnet's layers differ ({_difference(sub)}); nas_llama's modeling file stores static "
                          "rotary tables (search with uniform_layers keeping every pair for a stock checkpoint, "
                          "or export as safetensors)")
    inv, scale = rope_frequencies(sub, 1)
    params = sub.rope_parameters or {}
    c: dict[str, Any] = {
        "architectures": [hf_remote.ARCHITECTURE], "model_type": hf_remote.MODEL_TYPE,
        "auto_map": dict(hf_remote.AUTO_MAP), "parent_model_type": sub.family,
        "vocab_size": sub.vocab, "hidden_size": sub.dim, "num_hidden_layers": len(sub.layers),
        "num_attention_heads": sub.heads, "num_key_value_heads": sub.n_kv, "parent_head_dim": sub.head_dim,
        "intermediate_size": [la.ffn for la in sub.layers],
        "rotary_pairs": [[list(p) for p in la.pairs] for la in sub.layers],
        # float32 values written as Python floats: read back as float32 they are the same bits
        "rope_inv_freq": [float(f) for f in inv], "rope_attention_scaling": scale,
        "parent_rope": {**{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
                        "rope_type": kind, "rope_theta": sub.rope_theta},
        "attention_window": sub.sliding_window, "qkv_bias": sub.qkv_bias, "o_bias": sub.o_bias,
        "mlp_bias": sub.mlp_bias, "qk_norm": sub.qk_norm, "hidden_act": "silu", "rms_norm_eps": sub.eps,
        "max_position_embeddings": sub.max_positions, "tie_word_embeddings": sub.tie_embeddings,
        "torch_dtype": "float32", "use_cache": True,
    }
    if kind == "longrope":  # the long factors past the original length, as rope_frequencies switches
        orig = int(params.get("original_max_position_embeddings") or sub.max_positions)
        long_inv, long_scale = rope_frequencies(sub, orig + 1)
        c.update(rope_long_inv_freq=[float(f) for f in long_inv], rope_long_attention_scaling=long_scale,
                 rope_long_after=orig)
    return c


def _generation_config(parent_dir: Path | None) -> str:
    """The parent's ``generation_config.json`` (its sampling settings and special tokens), or a
    greedy one when it has none."""
    if parent_dir is not None and (parent_dir / "generation_config.json").is_file():
        return (parent_dir / "generation_config.json").read_text()
    return json.dumps({"_from_model_config": True, "do_sample": False}, indent=2)


def hf_directory(net: Llama, out: Path, *, tokenizer_dir: Path | None) -> dict[str, Any]:
    """Write ``net`` (a dense subnet) into ``out`` as a Hugging Face checkpoint: a stock one
    of the parent's family when every layer has the same shape, else ``nas_llama`` with its
    modeling files. ``tokenizer_dir``: the parent's directory (tokenizer files, generation
    config). Returns the network config of the written model (what ``load_architecture``
    rebuilds), the tokenizer files copied and whether loading needs ``trust_remote_code``."""
    from safetensors.torch import save_file

    sub = net.config
    remote = _difference(sub) is not None
    if remote:
        config = remote_config(sub)
        # the subnet's own weights and names: load_architecture loads the same file into Llama
        weights = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
        network = sub.to_dict()
        for name in hf_remote.FILES:
            shutil.copyfile(hf_remote.path(name), out / name)
    else:
        config, dense, q_scale = hf_config(sub)
        weights, network = hf_state_dict(net, dense, q_scale), dense.to_dict()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    # the weights' own dtype (a bf16 parent's subnet is bf16): from_pretrained's "auto" keeps it
    config["torch_dtype"] = str(net.model.embed_tokens.weight.dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    (out / "generation_config.json").write_text(_generation_config(tokenizer_dir))
    copied = []
    if tokenizer_dir is not None and tokenizer_dir.is_dir():
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, out / name)
                copied.append(name)
    return {"network": network, "tokenizer_files": copied, "trust_remote_code": remote}
