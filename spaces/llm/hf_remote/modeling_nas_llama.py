"""NasLlama: a Llama-shaped decoder whose layers differ (per-layer MLP widths, per-layer and
per-head kept rotary pairs), the structural subnets nas-service's ``llm-subnet`` finds, as
DeciLM and Nemotron-NAS checkpoints have per-layer widths.

Parameter names are Llama's (``model.embed_tokens``, ``model.layers.N.self_attn.{q,k,v,o}_proj``
[, ``q_norm``, ``k_norm``], ``mlp.{gate,up,down}_proj``, ``input_layernorm``,
``post_attention_layernorm``, ``model.norm``, ``lm_head``); a layer's projections are as
wide as its heads: ``heads * 2 * len(pairs)`` rows of Q, ``kv_heads * 2 * len(pairs)`` of K
and V. Within a head, channel ``i`` and channel ``i + width / 2`` form the rotary pair
``rotary_pairs[layer][kv_head][i]`` of the parent (rotate_half pairing), rotated at the
parent's frequency of that pair; query head ``h`` reads key/value head ``h // (heads //
kv_heads)`` and keeps its pairs. Scores are scaled by the parent's ``1 / sqrt(head_dim)``.

Supports ``forward(input_ids, attention_mask=None, position_ids=None, labels=None)`` (a
padding mask; labels give the shifted cross-entropy loss), a KV cache
(transformers' ``DynamicCache``, passed as ``cache`` or ``past_key_values`` as the installed
transformers names it) and so ``generate``. Only torch and transformers are imported.
"""

from typing import Any, Optional, Tuple, Union

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_nas_llama import NasLlamaConfig

__all__ = ["NasLlamaModel", "NasLlamaForCausalLM", "NasLlamaPreTrainedModel"]

_V5 = int(transformers.__version__.split(".")[0]) >= 5
# transformers 5.2x renamed the cache argument and output field `past_key_values` to `cache`
_CACHE_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


class NasLlamaRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()  # the mean of squares in float32 whatever the weights' dtype, as Llama does
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(x.dtype)


class _RopeTables:
    """The parent's per-pair inverse frequencies and cos/sin scaling, as stored in the config
    (float32, as the parent computed them); a second table past ``rope_long_after`` tokens.
    Plain tensors, not buffers: built on first use on the input's device, so loading on the
    meta device (transformers 5) never leaves them empty."""

    def __init__(self, config: NasLlamaConfig) -> None:
        half = config.parent_head_dim // 2
        short = config.rope_inv_freq
        if short is None:  # the original rotary embedding at theta 10000
            theta = float((config.parent_rope or {}).get("rope_theta", 10000.0))
            short = (1.0 / (theta ** (torch.arange(0, 2 * half, 2, dtype=torch.float32) / (2 * half)))).tolist()
        self.short = (short, config.rope_attention_scaling)
        self.long = None if config.rope_long_inv_freq is None else (config.rope_long_inv_freq,
                                                                    config.rope_long_attention_scaling)
        self.after = config.rope_long_after
        self._made = {}

    def get(self, length: int, device: torch.device) -> Tuple[torch.Tensor, float]:
        """``(inv_freq, scaling)`` for a sequence of ``length`` tokens."""
        which = "long" if self.long is not None and length > self.after else "short"
        key = (which, str(device))
        if key not in self._made:
            values, scale = self.long if which == "long" else self.short
            self._made[key] = (torch.tensor(values, dtype=torch.float32, device=device), float(scale))
        return self._made[key]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class NasLlamaAttention(nn.Module):
    def __init__(self, config: NasLlamaConfig, layer_idx: int, rope: _RopeTables) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.pairs = config.rotary_pairs[layer_idx]
        self.heads, self.kv = config.num_attention_heads, config.num_key_value_heads
        self.group = self.heads // self.kv
        self.head_dim = 2 * len(self.pairs[0])
        # the parent's 1/sqrt(head_dim): a pruned head computes the parent's scores on its kept channels
        self.scaling = config.parent_head_dim ** -0.5
        self.rope = rope
        d = config.hidden_size
        self.q_proj = nn.Linear(d, self.heads * self.head_dim, bias=config.qkv_bias)
        self.k_proj = nn.Linear(d, self.kv * self.head_dim, bias=config.qkv_bias)
        self.v_proj = nn.Linear(d, self.kv * self.head_dim, bias=config.qkv_bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, d, bias=config.o_bias)
        if config.qk_norm:  # Qwen3: RMSNorm of each query and key head (its kept channels) before the rotation
            self.q_norm = NasLlamaRMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = NasLlamaRMSNorm(self.head_dim, config.rms_norm_eps)
        self.qk_norm = config.qk_norm
        self._pair_index = {}

    def _rotary(self, positions: torch.Tensor, length: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
        """cos and sin ``(batch, kv_heads, tokens, head_dim)``: key/value head ``h`` rotates its
        pair ``j`` at the parent's frequency of pair ``pairs[h][j]``."""
        inv, scale = self.rope.get(length, positions.device)
        key = str(positions.device)
        if key not in self._pair_index:
            self._pair_index[key] = torch.tensor(self.pairs, dtype=torch.long, device=positions.device)
        ang = positions.float()[:, :, None, None] * inv[self._pair_index[key]][None, None]  # (b, t, kv, m)
        ang = torch.cat((ang, ang), dim=-1).transpose(1, 2)  # (b, kv, t, 2m): channel i and i + m share pair i
        return (ang.cos() * scale).to(dtype), (ang.sin() * scale).to(dtype)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, length: int, mask: Union[torch.Tensor, bool],
                cache: Optional[Any] = None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = self._rotary(positions, length, q.dtype)
        g = self.group
        qc, qs = cos.repeat_interleave(g, 1), sin.repeat_interleave(g, 1)  # query head h reads kv head h // g
        q, k = q * qc + _rotate_half(q) * qs, k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)
        if g > 1:
            k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if isinstance(mask, bool) else mask,
                                           is_causal=mask is True, scale=self.scaling)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class NasLlamaMLP(nn.Module):
    def __init__(self, config: NasLlamaConfig, layer_idx: int) -> None:
        super().__init__()
        d, ffn = config.hidden_size, config.intermediate_size[layer_idx]
        self.gate_proj = nn.Linear(d, ffn, bias=config.mlp_bias)
        self.up_proj = nn.Linear(d, ffn, bias=config.mlp_bias)
        self.down_proj = nn.Linear(ffn, d, bias=config.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class NasLlamaDecoderLayer(nn.Module):
    def __init__(self, config: NasLlamaConfig, layer_idx: int, rope: _RopeTables) -> None:
        super().__init__()
        self.input_layernorm = NasLlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = NasLlamaAttention(config, layer_idx, rope)
        self.post_attention_layernorm = NasLlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = NasLlamaMLP(config, layer_idx)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, length: int, mask: Union[torch.Tensor, bool],
                cache: Optional[Any] = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), positions, length, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class NasLlamaPreTrainedModel(PreTrainedModel):
    config_class = NasLlamaConfig
    base_model_prefix = "model"
    _no_split_modules = ["NasLlamaDecoderLayer"]
    supports_gradient_checkpointing = False
    # no _init_weights of ours: transformers' default initialises only what a checkpoint lacks (5 marks
    # loaded tensors; a plain normal_ here would overwrite them)


def _cache_argument(cache: Optional[Any], past_key_values: Optional[Any]) -> Optional[Any]:
    """The cache under either name; a legacy tuple of (key, value) per layer becomes a DynamicCache."""
    if cache is not None and past_key_values is not None:
        raise ValueError("cache and past_key_values: pass one of them (the same cache)")
    c = cache if cache is not None else past_key_values
    if isinstance(c, (tuple, list)):
        if not hasattr(DynamicCache, "from_legacy_cache"):
            raise ValueError("past_key_values: a tuple cache; valid: a transformers Cache (DynamicCache)")
        c = DynamicCache.from_legacy_cache(tuple(c))
    return c


class NasLlamaModel(NasLlamaPreTrainedModel):
    def __init__(self, config: NasLlamaConfig) -> None:
        super().__init__(config)
        rope = _RopeTables(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([NasLlamaDecoderLayer(config, n, rope) for n in range(config.num_hidden_layers)])
        self.norm = NasLlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def _mask(self, attention_mask: Optional[torch.Tensor], past: int, t: int, total: int,
              device: torch.device) -> Union[torch.Tensor, bool]:
        """Which keys each query sees: ``j <= past + i`` (within the window ``j > past + i -
        window``) and not padding; ``True``: plain causal (SDPA's own), ``False``: every key
        (one new token inside the window)."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; valid: (batch, keys) of "
                             "0 (padding) and 1")
        padded = attention_mask is not None and not bool(attention_mask[:, -total:].bool().all())
        w = self.config.attention_window
        if not padded and (w is None or total <= w) and (t == 1 or past == 0):
            return t > 1
        qpos = torch.arange(past, past + t, device=device)[:, None]
        kpos = torch.arange(total, device=device)[None, :]
        keep = kpos <= qpos
        if w is not None:
            keep = keep & (kpos > qpos - w)
        keep = keep[None, None]
        if padded:
            keep = keep & attention_mask[:, None, None, -total:].bool()
            # a padding query may see no key at all: let it see every key rather than give NaN
            keep = keep | ~keep.any(-1, keepdim=True)
        return keep

    def forward(self, input_ids: Optional[torch.LongTensor] = None, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.LongTensor] = None, cache: Optional[Any] = None,
                inputs_embeds: Optional[torch.Tensor] = None, use_cache: Optional[bool] = None,
                past_key_values: Optional[Any] = None, **kwargs: Any) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("input_ids and inputs_embeds: pass exactly one of them")
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        b, t = x.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        cache = _cache_argument(cache, past_key_values)
        if use_cache and cache is None:
            cache = DynamicCache()
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=x.device)[None].expand(b, t)
            length = past + t
        else:  # the rope's length as transformers takes it: one past the largest position
            position_ids = position_ids.to(x.device).expand(b, t)
            length = int(position_ids.max()) + 1
        mask = self._mask(attention_mask, past, t, past + t, x.device)
        for layer in self.layers:
            x = layer(x, position_ids, length, mask, cache if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(x), **{_CACHE_FIELD: cache if use_cache else None})


class NasLlamaForCausalLM(NasLlamaPreTrainedModel, GenerationMixin):
    # transformers 5 names the tie target; 4 ties the output embedding to the input one
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"} if _V5 else ["lm_head.weight"]

    def __init__(self, config: NasLlamaConfig) -> None:
        super().__init__(config)
        self.model = NasLlamaModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(self, input_ids: Optional[torch.LongTensor] = None, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.LongTensor] = None, cache: Optional[Any] = None,
                inputs_embeds: Optional[torch.Tensor] = None, labels: Optional[torch.LongTensor] = None,
                use_cache: Optional[bool] = None, past_key_values: Optional[Any] = None,
                logits_to_keep: Union[int, torch.Tensor] = 0, **kwargs: Any) -> CausalLMOutputWithPast:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
                         inputs_embeds=inputs_embeds, use_cache=use_cache, past_key_values=past_key_values)
        h = out.last_hidden_state
        keep = kwargs.get("num_logits_to_keep", logits_to_keep)  # the name transformers 4.4x passes
        if isinstance(keep, int) and keep > 0:  # generate asks for the last position's logits only
            h = h[:, -keep:]
        elif isinstance(keep, torch.Tensor):
            h = h[:, keep]
        logits = self.lm_head(h)
        loss = None
        if labels is not None:  # next-token cross-entropy: position i predicts label i + 1
            v = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, v).float(), labels[:, 1:].reshape(-1).to(logits.device),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: getattr(out, _CACHE_FIELD)})

