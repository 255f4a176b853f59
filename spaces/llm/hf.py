"""Importing a local Hugging Face Llama checkpoint (``LlamaForCausalLM``: the directory
``save_pretrained`` writes, or the model object) as an ``llm-subnet`` parent.

The directory is read with ``json`` and ``safetensors`` alone (``model.safetensors``, the
sharded ``model.safetensors.index.json``, or ``pytorch_model.bin``); ``transformers`` is
needed only to hand over a model object. Options :class:`~spaces.llm.model.Llama` has no
layer for are refused by name with the supported value. The imported parent is scored on
the same byte windows as the project's parents: meaningful for a byte-level model (a
vocabulary of at least 256 whose first 256 tokens are bytes).
"""

from __future__ import annotations

from typing import Any

from .._checkpoints import check_state_dict, read_pretrained
from .._errors import CheckpointError
from .model import Llama, LlamaConfig

__all__ = ["convert", "config_from_hf"]

# config.json values this importer supports (None: the key may be absent)
_REQUIRED = {"hidden_act": ("silu",), "attention_bias": (False, None), "mlp_bias": (False, None),
             "rope_scaling": (None,), "pretraining_tp": (1, None)}
_SHOWN = {None: "null"}


def config_from_hf(c: dict[str, Any]) -> LlamaConfig:
    if c.get("model_type", "llama") != "llama":
        raise CheckpointError(f"Hugging Face config: model_type is {c.get('model_type')!r}; llm-subnet imports "
                              "'llama' (LlamaForCausalLM) only")
    for key, ok in _REQUIRED.items():
        if c.get(key) not in ok:
            raise CheckpointError(f"Hugging Face config: {key} is {c.get(key)!r}; llm-subnet imports "
                                  f"{' or '.join(_SHOWN.get(v, repr(v)) for v in ok)}")
    try:
        dim, heads, layers = int(c["hidden_size"]), int(c["num_attention_heads"]), int(c["num_hidden_layers"])
        ffn, vocab = int(c["intermediate_size"]), int(c["vocab_size"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"Hugging Face config: {e} is missing or not an integer") from None
    kv = c.get("num_key_value_heads") or heads
    if kv != heads:
        raise CheckpointError(f"Hugging Face config: num_key_value_heads is {kv}; llm-subnet imports multi-head "
                              f"attention only (num_key_value_heads == num_attention_heads == {heads})")
    head_dim = c.get("head_dim") or dim // heads
    if head_dim * heads != dim or head_dim % 2:
        raise CheckpointError(f"Hugging Face config: head_dim {head_dim} with {heads} heads; llm-subnet imports "
                              f"an even head_dim with heads * head_dim == hidden_size ({dim})")
    rope = c.get("rope_theta")
    rp = c.get("rope_parameters")
    if isinstance(rp, dict):  # transformers 5 spelling
        if rp.get("rope_type", "default") != "default":
            raise CheckpointError(f"Hugging Face config: rope_parameters.rope_type is {rp.get('rope_type')!r}; "
                                  "llm-subnet imports 'default' only")
        rope = rp.get("rope_theta", rope)
    if vocab < 256:
        raise CheckpointError(f"Hugging Face config: vocab_size is {vocab}; llm-subnet scores parents on byte windows "
                              "and needs a vocabulary of at least 256 whose first 256 tokens are bytes")
    return LlamaConfig.dense(vocab, dim, heads, layers, ffn, rope_theta=float(rope or 10000.0),
                             eps=float(c.get("rms_norm_eps", 1e-6)), tie_embeddings=bool(c.get("tie_word_embeddings")))


def convert(source: Any) -> tuple[LlamaConfig, Llama]:
    """``(config, Llama with the weights)`` from a ``LlamaForCausalLM`` or its directory."""
    raw, sd = read_pretrained(source, "Hugging Face checkpoint", "LlamaForCausalLM",
                              ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin"))
    cfg = config_from_hf(raw)
    sd = {k: v for k, v in sd.items() if not k.endswith("rotary_emb.inv_freq")}  # a buffer older versions saved
    if cfg.tie_embeddings and "lm_head.weight" not in sd and "model.embed_tokens.weight" in sd:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    net = Llama(cfg)
    net.load_state_dict(check_state_dict(net, sd, "Hugging Face checkpoint"))
    return cfg, net.eval()
