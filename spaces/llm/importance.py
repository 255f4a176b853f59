"""Importance scores, masks and reformation for ``llm-subnet`` (methods §1.2, §1.5).

* :func:`importance` runs the parent on calibration windows and scores every attention
  channel and MLP channel with the OBS saliency ``W[i,j]^2 / [(2 X X^T)^-1]_jj`` summed over
  the rows of Q/K/V (gate/up) and the columns of O (down); attention scores are summed over
  each rotary pair, the unit a head keeps or drops.
* :func:`reform` rectifies the O and down projections of a subnet, layer after layer on the
  calibration activations of the already reformed layers before it, by closed-form least
  squares in float64: the kept columns ``K`` of each projection are refit so that, from the
  inputs the pruned layer really sees, it reproduces the dense layer's output
  (``W_K = (W X_dense) X_K^T (X_K X_K^T + lambda I)^-1``). For the down projection ``X_K``
  is exactly the dense input's rows ``K`` (the MLP channels are independent), which is the
  paper's ``W_K = W H_{:,K} H_{K,K}^-1``; for O the pruned Q/K change the attention
  weights, and fitting to what the pruned layer sees is what makes the output match.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import Llama, Masks, attn_rows

__all__ = ["Importance", "importance", "group_scores", "top_masks", "reform"]


@dataclass(frozen=True)
class Importance:
    attn: tuple[torch.Tensor, ...]  # per layer: (kv_heads, head_dim/2) pair scores
    mlp: tuple[torch.Tensor, ...]  # per layer: (ffn,) channel scores


def _inv_diag(gram: torch.Tensor) -> torch.Tensor:
    """The diagonal of ``(2 X X^T + damping)^-1`` (float64) from ``gram = X X^T`` of a projection's inputs."""
    h = 2 * gram.double()
    damp = 0.01 * h.diagonal().mean().clamp_min(1e-8)
    return torch.linalg.inv(h + damp * torch.eye(len(h), dtype=h.dtype)).diagonal()


def _saliency(w: torch.Tensor, inv_diag: torch.Tensor) -> torch.Tensor:
    """OBS saliency ``W[i,j]^2 / [(2 X X^T)^-1]_jj`` of every weight of ``w`` (out x in)."""
    return w.double() ** 2 / inv_diag[None]


_BATCH = 8  # calibration windows per forward: bounds the activations held at once


@torch.no_grad()
def _layer_grams(layer, h: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(the layer's output, X X^T of the inputs of its q_proj (= k, v), o_proj, gate_proj (=
    up) and down_proj)``: one layer's statistics at a time, so memory holds one layer's Grams
    and the hidden states of the calibration windows, not every layer's."""
    grams: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_m, inputs):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).float()  # float32 products of bf16 activations
            g = x.T @ x
            grams[name] = grams[name] + g if name in grams else g
        return fn

    a, m = layer.self_attn, layer.mlp
    hooks = [a.q_proj.register_forward_pre_hook(hook("qkv")), a.o_proj.register_forward_pre_hook(hook("o")),
             m.gate_proj.register_forward_pre_hook(hook("gu")), m.down_proj.register_forward_pre_hook(hook("down"))]
    try:
        out = torch.cat([layer(h[i:i + _BATCH]) for i in range(0, len(h), _BATCH)])
    finally:
        for k in hooks:
            k.remove()
    return out, grams


@torch.no_grad()
def importance(model: Llama, ids: torch.Tensor) -> Importance:
    """Scores of the parent's attention pairs and MLP channels on calibration ``ids`` (n, t),
    gathered layer by layer (no LM head: the scores need the layers' inputs only)."""
    cfg = model.config
    attn, mlp = [], []
    h = model.model.embed_tokens(ids)
    for layer in model.model.layers:
        h, g = _layer_grams(layer, h)
        inv = {k: _inv_diag(v) for k, v in g.items()}
        a, m = layer.self_attn, layer.mlp
        q = _saliency(a.q_proj.weight, inv["qkv"]).sum(1) + _saliency(a.o_proj.weight, inv["o"]).sum(0)
        kv = _saliency(a.k_proj.weight, inv["qkv"]).sum(1) + _saliency(a.v_proj.weight, inv["qkv"]).sum(1)
        attn.append(group_scores(q, kv, cfg).float())
        mlp.append((_saliency(m.gate_proj.weight, inv["gu"]).sum(1) + _saliency(m.up_proj.weight, inv["gu"]).sum(1)
                    + _saliency(m.down_proj.weight, inv["down"]).sum(0)).float())
    return Importance(tuple(attn), tuple(mlp))


def group_scores(q: torch.Tensor, kv: torch.Tensor, cfg) -> torch.Tensor:
    """Per key/value head, the scores of its rotary pairs ``(kv_heads, head_dim/2)`` from
    per-channel scores of the query side ``q`` (Q rows, O columns: ``heads * head_dim``) and
    the key/value side ``kv`` (K, V rows): a pair is kept by a key/value head and all its
    query heads together, so it scores their sum; a pair is channels ``i`` and ``i + head_dim/2``."""
    s = q.view(cfg.n_kv, cfg.group, cfg.head_dim).sum(1) + kv.view(cfg.n_kv, cfg.head_dim)
    return s.view(cfg.n_kv, 2, cfg.head_dim // 2).sum(1)


def top_masks(scores: Importance, depth: int, attn_keep: list[int], mlp_keep: list[int]) -> Masks:
    """Per layer, each head's ``attn_keep[l]`` best pairs and the ``mlp_keep[l]`` best channels."""
    attn = tuple(tuple(tuple(sorted(torch.topk(head, k).indices.tolist())) for head in scores.attn[n])
                 for n, k in zip(range(depth), attn_keep))
    mlp = tuple(tuple(sorted(torch.topk(scores.mlp[n], k).indices.tolist())) for n, k in zip(range(depth), mlp_keep))
    return Masks(attn, mlp)


def _refit(w: torch.Tensor, x_dense: torch.Tensor, x_kept: torch.Tensor) -> torch.Tensor:
    """``W_K`` minimising ``|W_K x_kept - W x_dense|`` (float64, ridge 1e-4 of the mean diagonal)."""
    target = w.double() @ x_dense.T.double()  # (out, n)
    xk = x_kept.T.double()  # (|K|, n)
    g = xk @ xk.T
    g += 1e-4 * g.diagonal().mean().clamp_min(1e-12) * torch.eye(len(g), dtype=g.dtype)
    return torch.linalg.solve(g, (target @ xk.T).T).T.to(w.dtype)  # (out, |K|)


@torch.no_grad()
def reform(model: Llama, masks: Masks, ids: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per kept layer, the rectified kept columns of ``o_proj`` and ``down_proj`` (float32;
    biases are unchanged: the refit matches the outputs without them)."""
    cfg = model.config
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    h = model.model.embed_tokens(ids[:, :-1] if ids.shape[1] > 1 else ids)
    for n, layer in enumerate(model.model.layers[:len(masks.attn)]):
        a, m = layer.self_attn, layer.mlp
        rows = attn_rows(tuple(p for p in masks.attn[n] for _ in range(cfg.group)), cfg.head_dim)  # O columns
        amask = model.attn_mask(masks.attn[n])
        x = layer.input_layernorm(h)
        y_dense = _attn_values(a, x, None)  # the inputs of o_proj, dense
        y_kept = _attn_values(a, x, amask)
        w_o = _refit(a.o_proj.weight, y_dense.reshape(-1, y_dense.shape[-1]), y_kept.reshape(-1, y_dense.shape[-1])[:, rows])
        o_full = torch.zeros_like(a.o_proj.weight)
        o_full[:, rows] = w_o
        h = h + F.linear(y_kept, o_full, a.o_proj.bias)
        x = layer.post_attention_layernorm(h)
        z = F.silu(m.gate_proj(x)) * m.up_proj(x)
        idx = torch.tensor(masks.mlp[n], dtype=torch.long)
        flat = z.reshape(-1, z.shape[-1])
        w_d = _refit(m.down_proj.weight, flat, flat[:, idx])
        h = h + F.linear(z[..., idx], w_d, m.down_proj.bias)
        out[n] = (w_o, w_d)
    return out


def _attn_values(a, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The attention's output before ``o_proj`` (what ``o_proj`` multiplies)."""
    captured = {}
    handle = a.o_proj.register_forward_pre_hook(lambda _m, inp: captured.setdefault("y", inp[0]))
    try:
        a(x, mask)
    finally:
        handle.remove()
    return captured["y"]
