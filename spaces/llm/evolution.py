"""The evolution operators of ``llm-subnet`` (methods §1.3): mutation of depth, counts and
masks, a repair into the job's size bounds, and crossover per gene, as a mixin of the space
(what the ``evolution`` strategy drives)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence


from .._architecture import Architecture
from .masks import masks_json, parse_masks

__all__ = ["MaskEvolution", "resize_mask"]


class MaskEvolution:
    """Needs of the space: ``_choices``, ``parent_config``, ``scores``, ``kept_ratio``,
    ``count_params``, ``_counts_config``, ``_top_masks``, ``_arch``."""

    def mutate(self, arch: Architecture, rng: random.Random, *, p_mask: float = 0.3, p_ratio: float = 0.1,
               p_depth: float = 0.1, alpha: float = 0.8) -> Architecture:
        """Methods §1.3: the depth moves with ``p_depth`` (new layers take importance masks at
        random counts), each count with ``p_ratio``, and each mask (per head; per layer for the
        MLP) with ``p_mask`` or when its count moved, to a random mask that keeps at least
        ``alpha`` of the old one's indices (drawn directly rather than by rejection, so a small
        count never spins)."""
        p = arch.params_dict()
        masks = parse_masks(self.parent_config, p["masks"], p)
        depth = p["depth"]
        if rng.random() < p_depth:
            depth = rng.choice(self._choices["depth"])
        attn, mlp = list(masks.attn[:depth]), list(masks.mlp[:depth])
        counts: dict[str, int] = {"depth": depth}
        for n in range(depth):
            for kind in ("attn", "mlp"):
                k = f"l{n}.{kind}"
                counts[k] = p[k] if k in p and rng.random() >= p_ratio else rng.choice(self._choices[k])
        fresh = self._top_masks(counts, "importance") if depth > len(masks.attn) else None
        half = self.parent_config.head_dim // 2
        for n in range(depth):
            if n >= len(masks.attn):
                attn.append(fresh.attn[n])
                mlp.append(fresh.mlp[n])
                continue
            if self.parent_config.qk_norm:  # q/k norm weights are shared by the heads: one mask for all
                attn[n] = (_mutate_mask(attn[n][0], counts[f"l{n}.attn"], half, rng, p_mask, alpha),) * len(attn[n])
            else:
                attn[n] = tuple(_mutate_mask(h, counts[f"l{n}.attn"], half, rng, p_mask, alpha) for h in attn[n])
            mlp[n] = _mutate_mask(mlp[n], counts[f"l{n}.mlp"], self.parent_config.layers[n].ffn, rng, p_mask, alpha)
        from .model import Masks

        return self._arch({**counts, "masks": masks_json(Masks(tuple(attn), tuple(mlp)))})

    def fit_bounds(self, arch: Architecture, bounds: Mapping[str, tuple[float | None, float | None]],
                   rng: random.Random) -> Architecture | None:
        """``arch`` moved into the job's bounds on ``kept_ratio`` (or ``params``): one grid step
        at a time on a random count, dropping the least important kept pairs or channels (or
        adding the most important missing ones), until it fits; ``None`` if it cannot.
        A mutation that changes a count by several steps lands outside a narrow window most of
        the time; without this, the evolution would only keep the mutants that barely move."""
        total = self.count_params(self.parent_config)
        lo, hi = bounds.get("kept_ratio", (None, None))
        if "params" in bounds:
            plo, phi = bounds["params"]
            if plo is not None:
                lo = max(lo or 0.0, plo / total)
            if phi is not None:
                hi = phi / total if hi is None else min(hi, phi / total)
        if lo is None and hi is None:
            return arch
        p = arch.params_dict()
        m = parse_masks(self.parent_config, p["masks"], p)
        counts = {k: v for k, v in p.items() if k != "masks"}
        attn, mlp = [list(x) for x in m.attn], list(m.mlp)
        sc = self.scores("importance")
        # uniform layers: layer 0's counts are every layer's, so only they move
        keys = [k for k in counts if k != "depth" and (k.startswith("l0.") or not self.config["uniform_layers"])]
        for _ in range(4 * len(keys) * 20):
            r = self.kept_ratio(self._counts_config(self._layer_counts(counts)))
            if (lo is None or r >= lo) and (hi is None or r <= hi):
                from .model import Masks

                return self._arch({**counts, "masks": masks_json(Masks(tuple(tuple(h) for h in attn), tuple(mlp)))})
            down = hi is not None and r > hi
            values = {k: self._choices[k] for k in keys}
            movable = [k for k in keys if (values[k].index(counts[k]) > 0 if down else values[k].index(counts[k]) < len(values[k]) - 1)]
            if not movable:
                return None
            k = rng.choice(movable)
            new = values[k][values[k].index(counts[k]) + (-1 if down else 1)]
            n, kind = int(k.split(".")[0][1:]), k.split(".")[1]
            if kind == "attn":
                attn[n] = [resize_mask(h, new, sc.attn[n][i]) for i, h in enumerate(attn[n])]
            else:
                mlp[n] = resize_mask(mlp[n], new, sc.mlp[n])
            counts[k] = new
        return None

    def crossover(self, a: Architecture, b: Architecture, rng: random.Random) -> Architecture:
        """Per gene (a layer's attention count and masks, its MLP count and mask, the depth),
        from either parent at random; a layer only one parent has comes from that parent."""
        from .model import Masks

        pa, pb = a.params_dict(), b.params_dict()
        ma, mb = parse_masks(self.parent_config, pa["masks"], pa), parse_masks(self.parent_config, pb["masks"], pb)
        depth = rng.choice((pa["depth"], pb["depth"]))
        counts: dict[str, int] = {"depth": depth}
        attn, mlp = [], []
        for n in range(depth):
            for kind in ("attn", "mlp"):
                src = rng.choice([x for x in ((pa, ma), (pb, mb)) if n < x[0]["depth"]])
                counts[f"l{n}.{kind}"] = src[0][f"l{n}.{kind}"]
                (attn if kind == "attn" else mlp).append(src[1].attn[n] if kind == "attn" else src[1].mlp[n])
        return self._arch({**counts, "masks": masks_json(Masks(tuple(attn), tuple(mlp)))})


def _mutate_mask(old: tuple[int, ...], k: int, size: int, rng: random.Random, p_mask: float,
                 alpha: float) -> tuple[int, ...]:
    if len(old) == k and rng.random() >= p_mask:
        return old
    keep = rng.sample(old, min(len(old), k, math.ceil(alpha * min(len(old), k))))
    kept = set(keep)
    rest = [i for i in range(size) if i not in kept]
    return tuple(sorted(keep + rng.sample(rest, k - len(keep))))


def resize_mask(kept: Sequence[int], k: int, scores) -> tuple[int, ...]:
    """``kept`` grown or shrunk to ``k`` indices: the least important go first, the most important come first."""
    kept = list(kept)
    if k < len(kept):
        kept.sort(key=lambda i: float(scores[i]))
        return tuple(sorted(kept[len(kept) - k:]))
    have = set(kept)
    extra = sorted((i for i in range(len(scores)) if i not in have), key=lambda i: -float(scores[i]))
    return tuple(sorted(kept + extra[:k - len(kept)]))
