"""Importing a local Hugging Face checkpoint of a Llama-shaped decoder as an ``llm-subnet``
parent: ``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM`` and
``Qwen3ForCausalLM`` (the directory ``save_pretrained`` writes, or the model object).

Grouped-query and multi-query attention, an explicit ``head_dim``, tied or untied
embeddings, attention and MLP biases, Qwen3's q/k norms, Mistral's sliding window and every
scaled rotary embedding transformers implements (``rope_scaling`` / ``rope_parameters``:
linear, dynamic, yarn, longrope, llama3, ...) are supported. The directory is read with
``json`` and ``safetensors`` alone (``model.safetensors``, the sharded
``model.safetensors.index.json``, or ``pytorch_model.bin``); ``transformers`` is needed to
hand over a model object and to compute a scaled rotary embedding's frequencies. Options
:class:`~spaces.llm.model.Llama` has no layer for are refused by name with the supported
value. Weights keep the checkpoint's dtype (bf16 and fp16 are computed in that dtype, as
the deployed model is; float32 otherwise, and for a checkpoint of mixed dtypes).
A job scores the parent with its own tokenizer (the ``tokenizer.json`` beside the weights)
on the job's text (:mod:`spaces.llm.corpus`).
"""

from __future__ import annotations

from typing import Any

from .._checkpoints import check_state_dict, read_pretrained
from .._errors import CheckpointError
from .model import FAMILIES, Llama, LlamaConfig

__all__ = ["convert", "config_from_hf", "ARCHITECTURES"]

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}
# config.json values this importer supports (None: the key may be absent)
_REQUIRED = {"hidden_act": ("silu",), "pretraining_tp": (1, None), "partial_rotary_factor": (1.0, 1, None),
             "use_sliding_window": (False, None)}
_SHOWN = {None: "null"}


def _fail(msg: str) -> CheckpointError:
    return CheckpointError(f"Hugging Face config: {msg}")


def _int(c: dict[str, Any], key: str, default: int | None = None) -> int:
    v = c.get(key)
    if v is None and default is not None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or v < 1:
        raise _fail(f"{key} is {v!r}; valid: a positive integer" + (" (it is required)" if default is None else ""))
    return int(v)


def _float(c: dict[str, Any], key: str, default: float) -> float:
    v = c.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise _fail(f"{key} is {v!r}; valid: a positive number")
    return float(v)


def _rope(c: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, scaled rope parameters or None)`` from either spelling: transformers 4's
    ``rope_theta`` + ``rope_scaling``, transformers 5's ``rope_parameters``."""
    theta = c.get("rope_theta")
    params = c.get("rope_parameters")
    if params is None:
        params = c.get("rope_scaling")
    if params is not None and not isinstance(params, dict):
        raise _fail(f"rope_parameters is {params!r}; valid: a mapping with rope_type (or null)")
    params = dict(params or {})
    nested = sorted(k for k, v in params.items() if isinstance(v, dict))
    if nested:  # per layer type (Gemma-style): {"full_attention": {...}, "sliding_attention": {...}}
        raise _fail(f"rope_parameters per layer type ({', '.join(nested)}); llm-subnet imports one rotary "
                    "embedding for every layer")
    if params.get("partial_rotary_factor") not in (None, 1, 1.0):
        raise _fail(f"rope_parameters.partial_rotary_factor is {params['partial_rotary_factor']!r}; llm-subnet "
                    "imports 1.0 (every channel rotated)")
    if c.get("original_max_position_embeddings") and "original_max_position_embeddings" not in params \
            and params.get("rope_type", params.get("type")) not in (None, "default"):
        # a top-level value (Phi-3 style) is where transformers reads it first
        params["original_max_position_embeddings"] = c["original_max_position_embeddings"]
    theta = float(params.pop("rope_theta", None) or theta or 10000.0)
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return theta, None
    try:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    except ImportError:  # pragma: no cover - the importers extra is missing
        raise _fail(f"rope type {kind!r} needs transformers (pip install 'nas-service[importers]')") from None
    if kind not in ROPE_INIT_FUNCTIONS:
        raise _fail(f"rope_parameters.rope_type is {kind!r}; valid: default, {', '.join(sorted(ROPE_INIT_FUNCTIONS))}")
    params["rope_type"] = kind
    params.pop("type", None)
    params["rope_theta"] = theta
    return theta, params


def _check_rope(cfg: LlamaConfig) -> None:
    """Computes the scaled rope's frequencies once, so a malformed one fails at import, by name."""
    from .model import rope_frequencies

    try:
        rope_frequencies(cfg, 1)
        rope_frequencies(cfg, cfg.max_positions + 1)
    except Exception as e:  # transformers' own KeyError / ValueError / TypeError for a missing or bad key
        raise _fail(f"rope_parameters {cfg.rope_parameters} cannot be computed by transformers "
                    f"({type(e).__name__}: {e})") from None


def config_from_hf(c: dict[str, Any]) -> LlamaConfig:
    family = c.get("model_type", "llama")
    if family not in FAMILIES:
        raise _fail(f"model_type is {family!r}; llm-subnet imports "
                    f"{', '.join(f'{f!r} ({a})' for f, a in ARCHITECTURES.items())}")
    for key, ok in _REQUIRED.items():
        if c.get(key) not in ok:
            raise _fail(f"{key} is {c.get(key)!r}; llm-subnet imports {' or '.join(_SHOWN.get(v, repr(v)) for v in ok)}")
    dim, heads, layers, ffn, vocab = (_int(c, k) for k in ("hidden_size", "num_attention_heads",
                                                           "num_hidden_layers", "intermediate_size", "vocab_size"))
    kv = _int(c, "num_key_value_heads", heads)
    if heads % kv:
        raise _fail(f"num_key_value_heads is {kv}; valid: a divisor of num_attention_heads ({heads})")
    head_dim = _int(c, "head_dim", dim // heads)
    if head_dim % 2 or head_dim < 2:
        raise _fail(f"head_dim is {head_dim}; llm-subnet imports an even head_dim (rotary pairs)")
    if family == "llama":
        bias = bool(c.get("attention_bias"))
        qkv_bias, o_bias = bias, bias
    else:  # Qwen2 always has q/k/v biases and no o bias; Mistral and Qwen3 have attention_bias
        qkv_bias = family == "qwen2" or bool(c.get("attention_bias"))
        o_bias = family != "qwen2" and bool(c.get("attention_bias"))
    layer_types = c.get("layer_types")
    if layer_types and set(layer_types) != {"full_attention"}:
        raise _fail(f"layer_types has {sorted(set(layer_types) - {'full_attention'})}; llm-subnet imports "
                    "full attention in every layer")
    window = c.get("sliding_window") if family == "mistral" else None
    theta, rope = _rope(c)
    return LlamaConfig.dense(
        vocab, dim, heads, layers, ffn, head_dim=head_dim, kv_heads=kv if kv != heads else 0, rope_theta=theta,
        eps=_float(c, "rms_norm_eps", 1e-6), tie_embeddings=bool(c.get("tie_word_embeddings")),
        qkv_bias=qkv_bias, o_bias=o_bias, mlp_bias=bool(c.get("mlp_bias")), qk_norm=family == "qwen3", rope=rope,
        max_positions=_int(c, "max_position_embeddings", 2048),
        sliding_window=_int(c, "sliding_window") if window else None, family=family)


def convert(source: Any) -> tuple[LlamaConfig, Llama]:
    """``(config, Llama with the weights)`` from one of :data:`ARCHITECTURES` or its directory."""
    raw, sd = read_pretrained(source, "Hugging Face checkpoint", " / ".join(ARCHITECTURES.values()),
                              ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin"))
    cfg = config_from_hf(raw)
    if cfg.rope is not None:
        _check_rope(cfg)
    sd = {k: v for k, v in sd.items() if not k.endswith("rotary_emb.inv_freq")}  # a buffer older versions saved
    if cfg.tie_embeddings and "lm_head.weight" not in sd and "model.embed_tokens.weight" in sd:
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    import torch

    kinds = {v.dtype for v in sd.values() if v.is_floating_point()}
    dtype = kinds.pop() if len(kinds) == 1 and kinds <= {torch.bfloat16, torch.float16} else torch.float32
    with torch.device("meta"):  # no random initialisation, no float32 copy: the tensors are assigned
        net = Llama(cfg).to(dtype)
    net.load_state_dict(check_state_dict(net, sd, "Hugging Face checkpoint"), assign=True)
    return cfg, net.eval()
