"""Uniform baselines of ``llm-subnet`` (FLAP / LLM-Pruner-like: every layer at the same
fraction) and the evolution's uniform start (methods §1.2), as a mixin of the space."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .._architecture import Architecture
from .._errors import InvalidConfigError
from .masks import masks_json

__all__ = ["UniformBaselines"]


class UniformBaselines:
    """Needs of the space: ``_choices``, ``parent_config``, ``kept_ratio``, ``count_params``,
    ``_counts_config``, ``_top_masks``, ``_arch``, ``largest``."""

    def uniform(self, kept_ratio: float, scores: str = "importance", depth: int | None = None) -> Architecture:
        """Every layer at the same fraction (FLAP / LLM-Pruner-like): the architecture of
        ``depth`` layers (default: all) whose kept-parameter ratio is closest to ``kept_ratio``,
        masks from ``scores`` (``importance`` or ``magnitude``). A ratio more than 0.05 outside
        what equal fractions reach at that depth is an error, not silently the nearest subnet."""
        if not isinstance(kept_ratio, (int, float)) or not 0 < kept_ratio <= 1:
            raise InvalidConfigError("kept_ratio", kept_ratio, "a number in (0, 1]")
        return self._uniform(kept_ratio, scores, depth, strict=True)

    def _uniform(self, kept_ratio: float, scores: str, depth: int | None, strict: bool) -> Architecture:
        depth = depth or self._choices["depth"][-1]
        best, best_gap, reached = None, math.inf, []
        for g in np.linspace(0.05, 1.0, 96):
            counts = self._uniform_counts(float(g), depth)
            reached.append(self.kept_ratio(self._counts_config(counts)))
            gap = abs(reached[-1] - kept_ratio)
            if gap < best_gap:
                best, best_gap = counts, gap
        if strict and not min(reached) - 0.05 <= kept_ratio <= max(reached) + 0.05:  # well beyond the grid
            raise InvalidConfigError("kept_ratio", kept_ratio, f"{min(reached):.3f} to {max(reached):.3f} "
                                     f"(every one of {depth} layers at the same fraction)")
        m = self._top_masks(best, scores)
        return self._arch({**best, "masks": masks_json(m)})

    def _uniform_counts(self, g: float, depth: int) -> dict[str, int]:
        counts: dict[str, int] = {"depth": depth}
        for n in range(depth):
            for kind, full in (("attn", self.parent_config.head_dim // 2), ("mlp", self.parent_config.layers[n].ffn)):
                values = self._choices[f"l{n}.{kind}"]
                counts[f"l{n}.{kind}"] = min(values, key=lambda v: abs(v - g * full))
        return counts

    def initial_architecture(self, bounds: Mapping[str, tuple[float | None, float | None]]) -> Architecture:
        """The evolution's start (methods §1.2): every layer at the same ratio, importance
        masks, at the middle of the job's bounds on ``kept_ratio`` or ``params``."""
        lo, hi = bounds.get("kept_ratio", (None, None))
        if lo is None and hi is None and "params" in bounds:
            total = self.count_params(self.parent_config)
            lo, hi = (None if v is None else v / total for v in bounds["params"])
        if lo is None and hi is None:
            return self.largest()
        target = (lo + hi) / 2 if lo is not None and hi is not None else (hi if hi is not None else 1.0)
        # the nearest uniform subnet even when the bounds need fewer layers: fit_bounds moves it in
        return self._uniform(min(1.0, max(1e-3, target)), "importance", None, strict=False)
