"""The masks codec of ``llm-subnet``: which rotary pairs and MLP channels an architecture
keeps, stored with it under ``masks`` as hexadecimal bitmasks (``"lN.attn"``: one per
key/value head, whose query heads keep the same; ``"lN.mlp"``: one per layer)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._errors import InvalidArchitectureError

if TYPE_CHECKING:  # the model module imports torch: the codec does not need it
    from .model import LlamaConfig, Masks

__all__ = ["hex_mask", "unhex", "parse_masks", "masks_json"]


def hex_mask(indices: Sequence[int]) -> str:
    return format(sum(1 << i for i in indices), "x")


def unhex(text: Any, size: int, key: str) -> tuple[int, ...]:
    try:
        value = int(text, 16)
    except (TypeError, ValueError):
        raise InvalidArchitectureError(f"llm-subnet: masks.{key} is {text!r}; valid: a hexadecimal bitmask") from None
    if value < 0 or value >> size:
        raise InvalidArchitectureError(f"llm-subnet: masks.{key} is {text!r}; valid: a bitmask of {size} bits")
    return tuple(i for i in range(size) if value >> i & 1)


def parse_masks(p: LlamaConfig, masks: Any, counts: Mapping[str, int], name: str = "llm-subnet") -> Masks:
    """The :class:`Masks` of an architecture's ``masks`` for its ``counts``, checked against the parent ``p``."""
    from .model import Masks

    half = p.head_dim // 2
    if not isinstance(masks, Mapping):
        raise InvalidArchitectureError(f"{name}: masks is a {type(masks).__name__}; valid: a mapping of "
                                       "lN.attn (one hex bitmask per key/value head) and lN.mlp (a hex bitmask)")
    attn, mlp = [], []
    for n in range(counts["depth"]):
        heads = masks.get(f"l{n}.attn")
        if not isinstance(heads, (list, tuple)) or len(heads) != p.n_kv:
            raise InvalidArchitectureError(f"{name}: masks.l{n}.attn is {heads!r}; valid: {p.n_kv} hex "
                                           f"bitmasks of {half} bits, one per key/value head")
        pairs = tuple(unhex(h, half, f"l{n}.attn") for h in heads)
        if any(len(x) != counts[f"l{n}.attn"] for x in pairs):
            raise InvalidArchitectureError(f"{name}: masks.l{n}.attn keeps {[len(x) for x in pairs]} pairs per "
                                           f"head; l{n}.attn says {counts[f'l{n}.attn']} for every head")
        if p.qk_norm and len(set(pairs)) > 1:
            raise InvalidArchitectureError(f"{name}: masks.l{n}.attn differs between heads; this parent's q/k norms "
                                           "share one weight per head channel, so every head keeps the same pairs")
        ch = unhex(masks.get(f"l{n}.mlp"), p.layers[n].ffn, f"l{n}.mlp")
        if len(ch) != counts[f"l{n}.mlp"]:
            raise InvalidArchitectureError(f"{name}: masks.l{n}.mlp keeps {len(ch)} channels; l{n}.mlp says "
                                           f"{counts[f'l{n}.mlp']}")
        attn.append(pairs)
        mlp.append(ch)
    extra = sorted(set(masks) - {f"l{n}.{k}" for n in range(counts["depth"]) for k in ("attn", "mlp")})
    if extra:
        raise InvalidArchitectureError(f"{name}: masks.{extra[0]} is not a kept layer's mask")
    return Masks(tuple(attn), tuple(mlp))

def masks_json(m: Masks) -> dict[str, Any]:
    """``masks`` as stored with an architecture: hexadecimal bitmasks per key/value head and per MLP."""
    out: dict[str, Any] = {}
    for n, (pairs, ch) in enumerate(zip(m.attn, m.mlp)):
        out[f"l{n}.attn"] = [hex_mask(p) for p in pairs]
        out[f"l{n}.mlp"] = hex_mask(ch)
    return out
