"""NasLlama's configuration: a Llama-shaped decoder (Llama, Mistral, Qwen2, Qwen3) whose
layers differ, as a structural subnet of one (found by nas-service's ``llm-subnet``) has.

Per layer it holds the MLP width (``intermediate_size``, a list) and, per key/value head,
which rotary pairs of the parent's head it keeps (``rotary_pairs[layer][kv_head]``, indices
into the parent's ``head_dim / 2`` frequencies; every head of a layer keeps as many, so the
layer's head width is ``2 * len(pairs)``). A head keeps the parent's geometry: its scores
are scaled by ``1 / sqrt(parent_head_dim)`` and pair ``j`` rotates at the parent's
frequency ``rope_inv_freq[rotary_pairs[layer][head][j]]``.

The rotary frequencies are stored as computed for the parent (any scaled rope: linear,
llama3, yarn, ...), with the cos/sin scaling ``rope_attention_scaling``; a rope that
switches tables with the sequence length (longrope) also stores ``rope_long_inv_freq`` and
``rope_long_attention_scaling``, used when the sequence is longer than
``rope_long_after``. ``attention_window`` is Mistral's sliding window (a token attends to
this many, itself included). Needs only transformers (written without ``from __future__``
and without class-level annotations: transformers 5 turns configs into dataclasses).
"""

from typing import Any, List, Optional

from transformers import PretrainedConfig

__all__ = ["NasLlamaConfig"]


class NasLlamaConfig(PretrainedConfig):
    model_type = "nas_llama"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 4096,
        num_attention_heads: int = 32,
        num_key_value_heads: Optional[int] = None,
        parent_head_dim: Optional[int] = None,
        intermediate_size: Optional[List[int]] = None,
        rotary_pairs: Optional[List[List[List[int]]]] = None,
        rope_inv_freq: Optional[List[float]] = None,
        rope_attention_scaling: float = 1.0,
        rope_long_inv_freq: Optional[List[float]] = None,
        rope_long_attention_scaling: float = 1.0,
        rope_long_after: Optional[int] = None,
        parent_rope: Optional[dict] = None,
        attention_window: Optional[int] = None,
        qkv_bias: bool = False,
        o_bias: bool = False,
        mlp_bias: bool = False,
        qk_norm: bool = False,
        hidden_act: str = "silu",
        rms_norm_eps: float = 1e-6,
        max_position_embeddings: int = 2048,
        initializer_range: float = 0.02,
        use_cache: bool = True,
        tie_word_embeddings: bool = False,
        parent_model_type: str = "llama",
        **kwargs: Any,
    ) -> None:
        kv = num_key_value_heads or num_attention_heads
        head_dim = parent_head_dim or hidden_size // num_attention_heads
        widths = [int(w) for w in (intermediate_size or [])]
        # default: every layer keeps every pair of the parent's head (a plain Llama)
        pairs = rotary_pairs if rotary_pairs is not None else [[list(range(head_dim // 2))] * kv for _ in widths]
        _check(num_attention_heads, kv, head_dim, widths, pairs, rope_inv_freq, rope_long_inv_freq, rope_long_after,
               hidden_act)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = kv
        self.parent_head_dim = head_dim
        self.intermediate_size = widths
        self.num_hidden_layers = len(widths)
        self.rotary_pairs = [[[int(i) for i in p] for p in layer] for layer in pairs]
        self.rope_inv_freq = None if rope_inv_freq is None else [float(f) for f in rope_inv_freq]
        self.rope_attention_scaling = float(rope_attention_scaling)
        self.rope_long_inv_freq = None if rope_long_inv_freq is None else [float(f) for f in rope_long_inv_freq]
        self.rope_long_attention_scaling = float(rope_long_attention_scaling)
        self.rope_long_after = rope_long_after
        self.parent_rope = parent_rope
        self.attention_window = attention_window
        self.qkv_bias = qkv_bias
        self.o_bias = o_bias
        self.mlp_bias = mlp_bias
        self.qk_norm = qk_norm
        self.hidden_act = hidden_act
        self.rms_norm_eps = rms_norm_eps
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.parent_model_type = parent_model_type
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)


def _check(heads: int, kv: int, head_dim: int, widths: List[int], pairs: Any, inv: Optional[List[float]],
           long_inv: Optional[List[float]], long_after: Optional[int], act: str) -> None:
    """Names the first field that does not describe a network (ValueError)."""
    half = head_dim // 2
    if heads % kv:
        raise ValueError(f"num_key_value_heads is {kv}; valid: a divisor of num_attention_heads ({heads})")
    if head_dim % 2:
        raise ValueError(f"parent_head_dim is {head_dim}; valid: an even number (rotary pairs)")
    if act != "silu":
        raise ValueError(f"hidden_act is {act!r}; valid: 'silu' (SwiGLU)")
    if len(pairs) != len(widths):
        raise ValueError(f"rotary_pairs has {len(pairs)} layers, intermediate_size {len(widths)}; valid: one entry "
                         "per layer in both")
    for n, layer in enumerate(pairs):
        if len(layer) != kv or len({len(p) for p in layer}) != 1 or not layer[0]:
            raise ValueError(f"rotary_pairs[{n}]: valid: {kv} lists (one per key/value head) of as many (>= 1) "
                             "pair indices")
        if any(not 0 <= i < half for p in layer for i in p):
            raise ValueError(f"rotary_pairs[{n}]: valid: pair indices in 0..{half - 1}")
        if widths[n] < 1:
            raise ValueError(f"intermediate_size[{n}] is {widths[n]}; valid: >= 1")
    for name, table in (("rope_inv_freq", inv), ("rope_long_inv_freq", long_inv)):
        if table is not None and len(table) != half:
            raise ValueError(f"{name} has {len(table)} frequencies; valid: parent_head_dim / 2 = {half}")
    if (long_inv is None) != (long_after is None):
        raise ValueError("rope_long_inv_freq and rope_long_after: valid: both set (a rope that switches tables past "
                         "that length) or neither")
