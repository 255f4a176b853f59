"""The decoder of ``llm-subnet``: a LLaMA-architecture network (RMSNorm, rotary embeddings,
SwiGLU MLP, multi-head attention) under Hugging Face's parameter names, so a
``LlamaForCausalLM`` state dict loads as it is and a found subnet's weights load back into
that layout.

One class serves the parent and its dense subnets: :class:`LlamaConfig` gives every layer
its own head width and MLP width, and, per head, which rotary *pairs* it keeps. A head of
width ``2m`` keeps ``m`` pairs ``(i, i + head_dim/2)`` of the parent's head: Hugging Face's
rotary embedding rotates channel ``i`` with channel ``i + head_dim/2`` at frequency ``i``,
so keeping both channels of a pair keeps the rotation exact, and the subnet's head rotates
its pairs at their original frequencies (``rope_freqs``).

``forward(ids, masks=...)`` runs the parent as a subnet without copying a weight: the
attention channels and MLP channels outside the masks are zeroed (Q/K/V rows, which zeroes
the matching O columns' inputs; gate/up rows, which zeroes the down columns' inputs) and
the layers past ``depth`` are skipped. ``Llama.slice(masks)`` builds the dense subnet whose
output equals it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LayerConfig", "LlamaConfig", "Llama", "Masks", "param_count"]


@dataclass(frozen=True)
class LayerConfig:
    ffn: int  # MLP hidden channels
    pairs: tuple[tuple[int, ...], ...]  # per head: the parent's rotary pairs it keeps (all heads keep as many)

    @property
    def head_dim(self) -> int:
        return 2 * len(self.pairs[0])


@dataclass(frozen=True)
class LlamaConfig:
    vocab: int
    dim: int
    heads: int
    head_dim: int  # the parent's; a layer's own is LayerConfig.head_dim
    layers: tuple[LayerConfig, ...]
    rope_theta: float = 10000.0
    eps: float = 1e-5
    tie_embeddings: bool = False

    @classmethod
    def dense(cls, vocab: int, dim: int, heads: int, depth: int, ffn: int, **kw: Any) -> LlamaConfig:
        hd = dim // heads
        layer = LayerConfig(ffn, tuple(tuple(range(hd // 2)) for _ in range(heads)))
        return cls(vocab, dim, heads, hd, (layer,) * depth, **kw)

    def with_layers(self, layers: tuple[LayerConfig, ...]) -> LlamaConfig:
        return replace(self, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [{"ffn": la.ffn, "pairs": [list(p) for p in la.pairs]} for la in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        d = dict(d)
        d["layers"] = tuple(LayerConfig(int(la["ffn"]), tuple(tuple(int(i) for i in p) for p in la["pairs"]))
                            for la in d["layers"])
        cfg = cls(**d)
        half = cfg.head_dim // 2
        for n, la in enumerate(cfg.layers):
            if len(la.pairs) != cfg.heads or len({len(p) for p in la.pairs}) != 1 or not la.pairs[0]:
                raise ValueError(f"layers[{n}].pairs: every one of the {cfg.heads} heads keeps the same number (>= 1) of pairs")
            if any(not 0 <= i < half for p in la.pairs for i in p) or any(list(p) != sorted(set(p)) for p in la.pairs):
                raise ValueError(f"layers[{n}].pairs: sorted distinct pair indices in 0..{half - 1}")
            if la.ffn < 1:
                raise ValueError(f"layers[{n}].ffn: {la.ffn}; valid: >= 1")
        return cfg


@dataclass(frozen=True)
class Masks:
    """A subnet of a parent: per kept layer, the rotary pairs each head keeps and the MLP
    channels kept (sorted index tuples); layers past ``len(attn)`` are removed."""

    attn: tuple[tuple[tuple[int, ...], ...], ...]  # [layer][head] -> pair indices
    mlp: tuple[tuple[int, ...], ...]  # [layer] -> channel indices


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class _Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: LayerConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.heads, layer.head_dim
        # the parent's 1/sqrt(head_dim): a subnet's head computes the parent's scores on its kept channels
        self.scale = cfg.head_dim ** -0.5
        inner = cfg.heads * layer.head_dim
        self.q_proj = nn.Linear(cfg.dim, inner, bias=False)
        self.k_proj = nn.Linear(cfg.dim, inner, bias=False)
        self.v_proj = nn.Linear(cfg.dim, inner, bias=False)
        self.o_proj = nn.Linear(inner, cfg.dim, bias=False)
        # per head, the frequencies of its kept pairs (the parent's frequency of each pair)
        base = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2, dtype=torch.float32) / cfg.head_dim))
        self.register_buffer("rope_freqs", base[torch.tensor(layer.pairs)], persistent=False)  # (heads, m)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if mask is not None:  # the parent run as a subnet: removed channels are zero
            q, k, v = q * mask, k * mask, v * mask
        q, k, v = (z.view(b, t, self.heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        start = cache[0].shape[2] if cache else 0  # decoding: the positions after the cached ones
        pos = torch.arange(start, start + t, dtype=torch.float32)
        ang = pos[:, None, None] * self.rope_freqs[None]  # (t, heads, m)
        ang = torch.cat((ang, ang), dim=-1).transpose(0, 1)  # (heads, t, 2m)
        cos, sin = ang.cos().to(q.dtype), ang.sin().to(q.dtype)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if cache is not None:
            if cache:
                k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
            cache[:] = [k, v]
        # one new token attends to everything cached; a prompt attends causally
        y = F.scaled_dot_product_attention(q, k, v, is_causal=bool(t > 1), scale=self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, -1))


class _MLP(nn.Module):
    def __init__(self, dim: int, ffn: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, ffn, bias=False)
        self.up_proj = nn.Linear(dim, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)
        return self.down_proj(h if mask is None else h * mask)


class _Layer(nn.Module):
    def __init__(self, cfg: LlamaConfig, layer: LayerConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.self_attn = _Attention(cfg, layer)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.mlp = _MLP(cfg.dim, layer.ffn)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                mlp_mask: torch.Tensor | None = None, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), attn_mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x), mlp_mask)


class Llama(nn.Module):
    """``LlamaForCausalLM`` (no key/value grouping, no biases) under its parameter names:
    ``model.embed_tokens``, ``model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
    post_attention_layernorm, mlp.{gate,up,down}_proj}``, ``model.norm``, ``lm_head``."""

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

    def attn_mask(self, pairs: tuple[tuple[int, ...], ...]) -> torch.Tensor:
        hd, half = self.config.head_dim, self.config.head_dim // 2
        m = torch.zeros(self.config.heads, hd)
        for h, p in enumerate(pairs):
            idx = torch.tensor(p, dtype=torch.long)
            m[h, idx] = 1.0
            m[h, idx + half] = 1.0
        return m.reshape(-1)

    def mlp_mask(self, channels: tuple[int, ...], layer: int) -> torch.Tensor:
        m = torch.zeros(self.config.layers[layer].ffn)
        m[torch.tensor(channels, dtype=torch.long)] = 1.0
        return m

    def subnet_config(self, masks: Masks) -> LlamaConfig:
        """The dense config of ``masks`` (pair indices relative to the parent's head)."""
        if any(la.head_dim != self.config.head_dim for la in self.config.layers):
            raise ValueError("masks apply to a full parent (every head with every channel), not to a subnet")
        return self.config.with_layers(tuple(LayerConfig(len(ch), pairs) for pairs, ch in zip(masks.attn, masks.mlp)))

    @torch.no_grad()
    def slice(self, masks: Masks) -> Llama:
        """The dense subnet of ``masks`` with the parent's weights (rows and columns copied)."""
        net = Llama(self.subnet_config(masks))
        net.model.embed_tokens.weight.copy_(self.model.embed_tokens.weight)
        net.model.norm.weight.copy_(self.model.norm.weight)
        if not self.config.tie_embeddings:
            net.lm_head.weight.copy_(self.lm_head.weight)
        for n, (pairs, ch) in enumerate(zip(masks.attn, masks.mlp)):
            src, dst = self.model.layers[n], net.model.layers[n]
            rows = attn_rows(pairs, self.config.head_dim)
            for name in ("q_proj", "k_proj", "v_proj"):
                getattr(dst.self_attn, name).weight.copy_(getattr(src.self_attn, name).weight[rows])
            dst.self_attn.o_proj.weight.copy_(src.self_attn.o_proj.weight[:, rows])
            idx = torch.tensor(ch, dtype=torch.long)
            dst.mlp.gate_proj.weight.copy_(src.mlp.gate_proj.weight[idx])
            dst.mlp.up_proj.weight.copy_(src.mlp.up_proj.weight[idx])
            dst.mlp.down_proj.weight.copy_(src.mlp.down_proj.weight[:, idx])
            dst.input_layernorm.weight.copy_(src.input_layernorm.weight)
            dst.post_attention_layernorm.weight.copy_(src.post_attention_layernorm.weight)
        return net.eval()


def attn_rows(pairs: tuple[tuple[int, ...], ...], head_dim: int) -> torch.Tensor:
    """Indices of the Q/K/V rows (O columns) a layer keeps: per head, its pairs' first
    channels then their partners, so the dense head's rotate_half pairs them again."""
    half = head_dim // 2
    out = []
    for h, p in enumerate(pairs):
        out += [h * head_dim + i for i in p] + [h * head_dim + half + i for i in p]
    return torch.tensor(out, dtype=torch.long)


def param_count(cfg: LlamaConfig) -> int:
    n = cfg.vocab * cfg.dim * (1 if cfg.tie_embeddings else 2) + cfg.dim
    for la in cfg.layers:
        inner = cfg.heads * la.head_dim
        n += 2 * cfg.dim + 4 * cfg.dim * inner + 3 * cfg.dim * la.ffn
    return n


def macs_per_token(cfg: LlamaConfig, context: int) -> int:
    """Multiply-accumulates per token at ``context`` tokens of attention (projections, MLP,
    scores and values, LM head)."""
    n = cfg.dim * cfg.vocab
    for la in cfg.layers:
        inner = cfg.heads * la.head_dim
        n += 4 * cfg.dim * inner + 3 * cfg.dim * la.ffn + 2 * context * inner
    return n

