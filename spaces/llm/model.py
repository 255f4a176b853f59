"""The decoder of ``llm-subnet``: a LLaMA-architecture network (RMSNorm, rotary embeddings,
SwiGLU MLP, grouped-query attention) under Hugging Face's parameter names, so a
``LlamaForCausalLM`` state dict loads as it is and a found subnet's weights load back into
that layout.

One class serves the parent and its dense subnets: :class:`LlamaConfig` gives every layer
its own head width and MLP width, and, per head, which rotary *pairs* it keeps. A head of
width ``2m`` keeps ``m`` pairs ``(i, i + head_dim/2)`` of the parent's head: Hugging Face's
rotary embedding rotates channel ``i`` with channel ``i + head_dim/2`` at frequency ``i``,
so keeping both channels of a pair keeps the rotation exact, and the subnet's head rotates
its pairs at their original frequencies (``pair_index`` into the parent's).

``forward(ids, masks=...)`` runs the parent as a subnet without copying a weight: the
attention channels and MLP channels outside the masks are zeroed (Q/K/V rows, which zeroes
the matching O columns' inputs; gate/up rows, which zeroes the down columns' inputs) and
the layers past ``depth`` are skipped. ``Llama.slice(masks)`` builds the dense subnet whose
output equals it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FAMILIES", "LayerConfig", "LlamaConfig", "Llama", "DecodeStep", "Masks", "AttnMask", "param_count", "macs_per_token",
           "rope_frequencies", "attn_rows", "kv_cache_elements", "memory_bytes"]


@dataclass(frozen=True)
class LayerConfig:
    ffn: int  # MLP hidden channels
    pairs: tuple[tuple[int, ...], ...]  # per key/value head: the parent's rotary pairs it keeps (all keep as many)

    @property
    def head_dim(self) -> int:
        return 2 * len(self.pairs[0])


# families whose decoder layer is Llama's up to the parts LlamaConfig switches on
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


@dataclass(frozen=True)
class LlamaConfig:
    """The decoder's shape. ``kv_heads`` < ``heads`` is grouped-query attention (query head
    ``h`` reads key/value head ``h // (heads // kv_heads)``); ``rope`` holds Hugging Face's
    ``rope_parameters`` for a scaled rotary embedding (``None``: the original, at
    ``rope_theta``); ``family`` is the Hugging Face ``model_type`` an export writes."""

    vocab: int
    dim: int
    heads: int
    head_dim: int  # the parent's; a layer's own is LayerConfig.head_dim
    layers: tuple[LayerConfig, ...]
    rope_theta: float = 10000.0
    eps: float = 1e-5
    tie_embeddings: bool = False
    kv_heads: int = 0  # 0: as many as heads (multi-head attention)
    qkv_bias: bool = False  # Qwen2; Llama's attention_bias sets o_bias too
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False  # Qwen3: RMSNorm of each query and key head before the rotation
    rope: tuple[tuple[str, Any], ...] | None = None  # rope_parameters as sorted pairs (frozen)
    max_positions: int = 2048
    sliding_window: int | None = None  # Mistral: a token attends to this many, itself included
    family: str = "llama"

    def __post_init__(self) -> None:
        if isinstance(self.rope, Mapping):  # given as a mapping: kept as sorted pairs, hashable
            object.__setattr__(self, "rope", _frozen(self.rope))

    @property
    def rope_parameters(self) -> dict[str, Any] | None:
        """``rope`` as Hugging Face writes it (lists stay tuples)."""
        return None if self.rope is None else dict(self.rope)

    @property
    def n_kv(self) -> int:
        return self.kv_heads or self.heads

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.heads // self.n_kv

    @classmethod
    def dense(cls, vocab: int, dim: int, heads: int, depth: int, ffn: int, *, head_dim: int | None = None,
              kv_heads: int = 0, **kw: Any) -> LlamaConfig:
        hd = head_dim or dim // heads
        layer = LayerConfig(ffn, tuple(tuple(range(hd // 2)) for _ in range(kv_heads or heads)))
        return cls(vocab, dim, heads, hd, (layer,) * depth, kv_heads=kv_heads, **kw)

    def with_layers(self, layers: tuple[LayerConfig, ...]) -> LlamaConfig:
        return replace(self, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [{"ffn": la.ffn, "pairs": [list(p) for p in la.pairs]} for la in self.layers]
        d["rope"] = None if self.rope is None else {k: list(v) if isinstance(v, tuple) else v for k, v in self.rope}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        d = dict(d)
        d["layers"] = tuple(LayerConfig(int(la["ffn"]), tuple(tuple(int(i) for i in p) for p in la["pairs"]))
                            for la in d["layers"])
        cfg = cls(**d)
        half = cfg.head_dim // 2
        if cfg.heads % cfg.n_kv:
            raise ValueError(f"kv_heads: {cfg.kv_heads}; valid: a divisor of heads ({cfg.heads})")
        if cfg.family not in FAMILIES:
            raise ValueError(f"family: {cfg.family!r}; valid: {', '.join(FAMILIES)}")
        for n, la in enumerate(cfg.layers):
            if len(la.pairs) != cfg.n_kv or len({len(p) for p in la.pairs}) != 1 or not la.pairs[0]:
                raise ValueError(f"layers[{n}].pairs: every one of the {cfg.n_kv} key/value heads keeps the same "
                                 "number (>= 1) of pairs")
            if any(not 0 <= i < half for p in la.pairs for i in p) or any(list(p) != sorted(set(p)) for p in la.pairs):
                raise ValueError(f"layers[{n}].pairs: sorted distinct pair indices in 0..{half - 1}")
            if la.ffn < 1:
                raise ValueError(f"layers[{n}].ffn: {la.ffn}; valid: >= 1")
        return cfg


def _frozen(v: Any) -> Any:
    """A JSON value as nested tuples (a mapping: sorted ``(key, value)`` pairs): hashable."""
    if isinstance(v, Mapping):
        return tuple(sorted((str(k), _frozen(x)) for k, x in v.items()))
    return tuple(map(_frozen, v)) if isinstance(v, (list, tuple)) else v


@dataclass(frozen=True)
class Masks:
    """A subnet of a parent: per kept layer, the rotary pairs each key/value head keeps (its
    query heads keep the same) and the MLP channels kept (sorted index tuples); layers past
    ``len(attn)`` are removed."""

    attn: tuple[tuple[tuple[int, ...], ...], ...]  # [layer][kv head] -> pair indices
    mlp: tuple[tuple[int, ...], ...]  # [layer] -> channel indices


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, kept: int | None = None) -> torch.Tensor:
        """``kept``: the number of kept (non-zero) channels of each row of a masked input, so
        that the mean of squares is the dense subnet's (over its own channels)."""
        h = x.float()
        ms = h.pow(2).mean(-1, keepdim=True) if kept is None else h.pow(2).sum(-1, keepdim=True) / kept
        h = h * torch.rsqrt(ms + self.eps)
        return self.weight * h.to(x.dtype)


@lru_cache(maxsize=64)
def _rope_base(head_dim: int, theta: float, rope_pairs: tuple[tuple[str, Any], ...] | None, max_positions: int,
               seq_len: int) -> tuple[torch.Tensor, float]:
    """``(inv_freq, attention_scaling)`` of the parent's head: the original rotary embedding,
    or, for scaled ones, what transformers' own rope functions compute (imported only then)."""
    if rope_pairs is None:
        return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)), 1.0
    import transformers
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {k: list(v) if isinstance(v, tuple) else v for k, v in rope_pairs}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return _rope_base(head_dim, float(rope.get("rope_theta", theta)), None, max_positions, 0)
    params = {**rope, "rope_type": kind, "rope_theta": rope.get("rope_theta", theta)}
    hf = transformers.LlamaConfig(hidden_size=head_dim, num_attention_heads=1, head_dim=head_dim,
                                  max_position_embeddings=max_positions, rope_theta=params["rope_theta"],
                                  rope_scaling=params)
    if getattr(hf, "rope_parameters", None) is not None:  # transformers 5
        hf.rope_parameters = params
    # dynamic NTK rescales once the sequence outgrows the original length; longrope switches
    # factors there: both are functions of the length, as in transformers' dynamic_rope_update
    kw = {"seq_len": seq_len} if kind in ("dynamic", "longrope") else {}
    inv, scale = ROPE_INIT_FUNCTIONS[kind](hf, None, **kw)
    return inv.float(), float(scale)


def rope_frequencies(cfg: LlamaConfig, seq_len: int) -> tuple[torch.Tensor, float]:
    """The parent head's rotary frequencies and cos/sin scaling for a sequence of ``seq_len``."""
    params = cfg.rope_parameters
    kind = None if params is None else params.get("rope_type", params.get("type"))
    if kind == "dynamic":
        seq_len = max(seq_len, cfg.max_positions)
    elif kind == "longrope":
        orig = int(params.get("original_max_position_embeddings") or cfg.max_positions)
        seq_len = orig + 1 if seq_len > orig else 0  # the long factors past the original length
    else:
        seq_len = 0
    return _rope_base(cfg.head_dim, cfg.rope_theta, cfg.rope, cfg.max_positions, seq_len)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class AttnMask(NamedTuple):
    """The kept channels of a masked attention layer: 0/1 over the query rows (``heads *
    head_dim``) and over the key/value rows (``kv_heads * head_dim``), and per head how many
    channels it keeps (what a q/k norm averages over)."""

    q: torch.Tensor
    kv: torch.Tensor
    kept: int


class _Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: LayerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.heads, self.kv, self.head_dim = cfg.heads, cfg.n_kv, layer.head_dim
        # the parent's 1/sqrt(head_dim): a subnet's head computes the parent's scores on its kept channels
        self.scale = cfg.head_dim ** -0.5
        self.q_proj = nn.Linear(cfg.dim, cfg.heads * layer.head_dim, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.dim, self.kv * layer.head_dim, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.dim, self.kv * layer.head_dim, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(cfg.heads * layer.head_dim, cfg.dim, bias=cfg.o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(layer.head_dim, cfg.eps)
            self.k_norm = RMSNorm(layer.head_dim, cfg.eps)
        # per key/value head, the indices of its kept pairs in the parent's head (their frequencies)
        # (on the CPU even when the module is built on the meta device: it is not in a state dict)
        self.register_buffer("pair_index", torch.tensor(layer.pairs, dtype=torch.long, device="cpu"),
                             persistent=False)

    def _rotary(self, t0: int, t: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        inv, scale = rope_frequencies(self.cfg, t0 + t)
        pos = torch.arange(t0, t0 + t, dtype=torch.float32)
        ang = pos[:, None, None] * inv[self.pair_index][None]  # (t, kv, m)
        ang = torch.cat((ang, ang), dim=-1).transpose(0, 1)  # (kv, t, 2m)
        return (ang.cos() * scale).to(dtype), (ang.sin() * scale).to(dtype)

    def forward(self, x: torch.Tensor, mask: AttnMask | None = None,
                cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if mask is not None:  # the parent run as a subnet: removed channels are zero
            q, k, v = q * mask.q, k * mask.kv, v * mask.kv
        q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k, v = (z.view(b, t, self.kv, self.head_dim).transpose(1, 2) for z in (k, v))
        if self.cfg.qk_norm:
            kept = None if mask is None else mask.kept
            q, k = self.q_norm(q, kept), self.k_norm(k, kept)
        start = cache[0].shape[2] if cache else 0  # decoding: the positions after the cached ones
        cos, sin = self._rotary(start, t, q.dtype)
        g = self.cfg.group
        qc, qs = cos.repeat_interleave(g, 0), sin.repeat_interleave(g, 0)  # query head h reads kv head h // g
        q, k = q * qc + _rotate_half(q) * qs, k * cos + _rotate_half(k) * sin
        if cache is not None:
            if cache:
                k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
            cache[:] = [k, v]
        if g > 1:
            k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
        hide = self._hidden(start, t, k.shape[2])
        if self.head_dim != self.cfg.head_dim:
            # the parent's 1/sqrt(head_dim) through the queries, not SDPA's scale= argument (which
            # the TorchScript ONNX exporter cannot trace): SDPA divides by sqrt of the local head_dim
            q = q * (self.scale * self.head_dim ** 0.5)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if isinstance(hide, bool) else hide,
                                           is_causal=hide is True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))

    def _hidden(self, start: int, t: int, total: int) -> torch.Tensor | bool:
        """Which keys each query sees: ``j <= start + i`` (and, with a sliding window, ``j >
        start + i - window``) as a boolean mask; ``True``: plain causal (SDPA's fast path),
        ``False``: everything (one new token, inside the window)."""
        w = self.cfg.sliding_window
        inside = w is None or total <= w
        if inside and (t == 1 or start == 0):
            return bool(t > 1)  # a Python bool also under tracing, where t is a traced size
        qpos = torch.arange(start, start + t)[:, None]
        kpos = torch.arange(total)[None, :]
        keep = kpos <= qpos
        if w is not None:
            keep &= kpos > qpos - w
        return keep


class _MLP(nn.Module):
    def __init__(self, dim: int, ffn: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, ffn, bias=bias)
        self.up_proj = nn.Linear(dim, ffn, bias=bias)
        self.down_proj = nn.Linear(ffn, dim, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)
        return self.down_proj(h if mask is None else h * mask)


class _Layer(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: LayerConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.self_attn = _Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.mlp = _MLP(cfg.dim, layer.ffn, cfg.mlp_bias)

    def forward(self, x: torch.Tensor, attn_mask: AttnMask | None = None,
                mlp_mask: torch.Tensor | None = None, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), attn_mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x), mlp_mask)


class Llama(nn.Module):
    """``LlamaForCausalLM`` and its Llama-shaped families (Mistral, Qwen2, Qwen3) under their
    parameter names: ``model.embed_tokens``, ``model.layers.N.{input_layernorm,
    self_attn.{q,k,v,o}_proj[, q_norm, k_norm], post_attention_layernorm,
    mlp.{gate,up,down}_proj}``, ``model.norm``, ``lm_head``."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(config.vocab, config.dim)
        self.model.layers = nn.ModuleList([_Layer(config, la) for la in config.layers])
        self.model.norm = RMSNorm(config.dim, config.eps)
        self.lm_head = nn.Linear(config.dim, config.vocab, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
            # load_state_dict(assign=True) (a network built on the meta device) replaces both
            # parameters: tie them again, to the embedding
            self.register_load_state_dict_post_hook(lambda m, _keys: m._tie())

    def _tie(self) -> None:
        self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids: torch.Tensor, masks: Masks | None = None) -> torch.Tensor:
        """Logits ``(batch, tokens, vocab)``; with ``masks``, of that subnet (no weight copied)."""
        return self.lm_head(self.model.norm(self.hidden(ids, masks)))

    @torch.no_grad()
    def step(self, ids: torch.Tensor, cache: list[list[torch.Tensor]]) -> torch.Tensor:
        """Logits of ``ids`` after the tokens in ``cache`` (one list per layer, filled in
        place; start with ``[[] for _ in model.model.layers]``): prefill, then decode."""
        x = self.model.embed_tokens(ids)
        for layer, c in zip(self.model.layers, cache):
            x = layer(x, cache=c)
        return self.lm_head(self.model.norm(x))

    def hidden(self, ids: torch.Tensor, masks: Masks | None = None, upto: int | None = None) -> torch.Tensor:
        x = self.model.embed_tokens(ids)
        layers = self.model.layers if masks is None else self.model.layers[:len(masks.attn)]
        for n, layer in enumerate(layers[:upto]):
            if masks is None:
                x = layer(x)
            else:
                x = layer(x, self.attn_mask(masks.attn[n]), self.mlp_mask(masks.mlp[n], n))
        return x

    def attn_mask(self, pairs: tuple[tuple[int, ...], ...]) -> AttnMask:
        """The 0/1 masks of a layer keeping ``pairs`` per key/value head (its query heads alike)."""
        hd, half = self.config.head_dim, self.config.head_dim // 2
        kv = torch.zeros(self.config.n_kv, hd)
        for h, p in enumerate(pairs):
            idx = torch.tensor(p, dtype=torch.long)
            kv[h, idx] = 1.0
            kv[h, idx + half] = 1.0
        q = kv.repeat_interleave(self.config.group, 0)
        dtype = self.model.embed_tokens.weight.dtype
        return AttnMask(q.reshape(-1).to(dtype), kv.reshape(-1).to(dtype), 2 * len(pairs[0]))

    def mlp_mask(self, channels: tuple[int, ...], layer: int) -> torch.Tensor:
        m = torch.zeros(self.config.layers[layer].ffn, dtype=self.model.embed_tokens.weight.dtype)
        m[torch.tensor(channels, dtype=torch.long)] = 1.0
        return m

    def subnet_config(self, masks: Masks) -> LlamaConfig:
        """The dense config of ``masks`` (pair indices relative to the parent's head)."""
        if any(la.head_dim != self.config.head_dim for la in self.config.layers):
            raise ValueError("masks apply to a full parent (every head with every channel), not to a subnet")
        return self.config.with_layers(tuple(LayerConfig(len(ch), pairs) for pairs, ch in zip(masks.attn, masks.mlp)))

    @torch.no_grad()
    def slice(self, masks: Masks) -> Llama:
        """The dense subnet of ``masks`` with the parent's weights (rows and columns copied, in
        the parent's dtype; built on the meta device, so no random initialisation and no
        float32 copy)."""
        cfg = self.config
        src = self.state_dict()
        sd = {k: src[k].clone() for k in ("model.embed_tokens.weight", "model.norm.weight")}
        if not cfg.tie_embeddings:
            sd["lm_head.weight"] = src["lm_head.weight"].clone()
        for n, (pairs, ch) in enumerate(zip(masks.attn, masks.mlp)):
            pre = f"model.layers.{n}."
            kv_rows = attn_rows(pairs, cfg.head_dim)
            q_rows = attn_rows(tuple(p for p in pairs for _ in range(cfg.group)), cfg.head_dim)
            idx = torch.tensor(ch, dtype=torch.long)
            rows = {"self_attn.q_proj": q_rows, "self_attn.k_proj": kv_rows, "self_attn.v_proj": kv_rows,
                    "mlp.gate_proj": idx, "mlp.up_proj": idx}
            for name, r in rows.items():
                for part in ("weight", "bias"):
                    if f"{pre}{name}.{part}" in src:
                        sd[f"{pre}{name}.{part}"] = src[f"{pre}{name}.{part}"][r]  # indexing copies
            sd[pre + "self_attn.o_proj.weight"] = src[pre + "self_attn.o_proj.weight"][:, q_rows]
            sd[pre + "mlp.down_proj.weight"] = src[pre + "mlp.down_proj.weight"][:, idx]
            for name in ("self_attn.o_proj.bias", "mlp.down_proj.bias", "input_layernorm.weight",
                         "post_attention_layernorm.weight"):
                if pre + name in src:
                    sd[pre + name] = src[pre + name].clone()
            if cfg.qk_norm:  # one head's kept channels, in the dense head's order
                local = attn_rows(pairs[:1], cfg.head_dim)
                for name in ("q_norm", "k_norm"):
                    sd[f"{pre}self_attn.{name}.weight"] = src[f"{pre}self_attn.{name}.weight"][local]
        if cfg.tie_embeddings:
            sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
        with torch.device("meta"):
            net = Llama(self.subnet_config(masks)).to(self.model.embed_tokens.weight.dtype)
        net.load_state_dict(sd, assign=True)
        return net.eval()


class DecodeStep(nn.Module):
    """One decoding step of ``net``: ``forward(ids)`` (one new token per sequence, ``(batch,
    1)``) returns its logits after ``context`` tokens already in the KV cache, which is filled
    once here (a prefill of random tokens) and held as buffers, so every call times the same
    step: attention over the whole cache, the new key and value appended, the LM head."""

    def __init__(self, net: Llama, context: int, batch: int = 1) -> None:
        super().__init__()
        self.net = net
        g = torch.Generator().manual_seed(0)
        cache: list[list[torch.Tensor]] = [[] for _ in net.model.layers]
        self.context_ids = torch.randint(0, net.config.vocab, (batch, context), generator=g)
        net.step(self.context_ids, cache)
        for n, (k, v) in enumerate(cache):
            self.register_buffer(f"k{n}", k)
            self.register_buffer(f"v{n}", v)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        cache = [[getattr(self, f"k{n}"), getattr(self, f"v{n}")] for n in range(len(self.net.model.layers))]
        return self.net.step(ids, cache)  # appends to copies: the buffers stay the same


def attn_rows(pairs: tuple[tuple[int, ...], ...], head_dim: int) -> torch.Tensor:
    """Indices of the rows a layer keeps of a projection with one head per entry of ``pairs``
    (Q: per query head; K/V: per key/value head; O: its columns, as Q): per head, its pairs'
    first channels then their partners, so the dense head's rotate_half pairs them again."""
    half = head_dim // 2
    out = []
    for h, p in enumerate(pairs):
        out += [h * head_dim + i for i in p] + [h * head_dim + half + i for i in p]
    return torch.tensor(out, dtype=torch.long)


def param_count(cfg: LlamaConfig) -> int:
    n = cfg.vocab * cfg.dim * (1 if cfg.tie_embeddings else 2) + cfg.dim
    for la in cfg.layers:
        q, kv = cfg.heads * la.head_dim, cfg.n_kv * la.head_dim
        n += 2 * cfg.dim + 2 * cfg.dim * (q + kv) + 3 * cfg.dim * la.ffn
        n += (q + 2 * kv) * cfg.qkv_bias + cfg.dim * cfg.o_bias + (2 * la.ffn + cfg.dim) * cfg.mlp_bias
        n += 2 * la.head_dim * cfg.qk_norm
    return n


def kv_cache_elements(cfg: LlamaConfig, context: int, batch: int = 1) -> int:
    """Elements of the KV cache after ``context`` tokens of ``batch`` sequences: a key and a
    value per key/value head and kept channel, per layer (a sliding window caps the tokens)."""
    tokens = min(context, cfg.sliding_window) if cfg.sliding_window else context
    return sum(2 * batch * tokens * cfg.n_kv * la.head_dim for la in cfg.layers)


def memory_bytes(cfg: LlamaConfig, context: int, batch: int = 1, dtype_bytes: int = 2) -> int:
    """What inference holds: the weights and the KV cache, ``dtype_bytes`` each (LLM-Viewer's
    count; activations of one step are small beside them and not counted)."""
    return (param_count(cfg) + kv_cache_elements(cfg, context, batch)) * dtype_bytes


def macs_per_token(cfg: LlamaConfig, context: int) -> int:
    """Multiply-accumulates per token at ``context`` tokens of attention (projections, MLP,
    scores and values, LM head)."""
    n = cfg.dim * cfg.vocab
    for la in cfg.layers:
        q, kv = cfg.heads * la.head_dim, cfg.n_kv * la.head_dim
        n += 2 * cfg.dim * (q + kv) + 3 * cfg.dim * la.ffn + 2 * context * q
    return n
