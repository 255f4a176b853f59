"""``RandomSuggest``: uniform sampling through the same define-by-run interface as Optuna."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["RandomSuggest"]


class RandomSuggest:
    """Answers ``suggest_categorical`` uniformly from a numpy ``Generator``.

    It records what it answered in ``params`` so a caller can see the raw suggestion.
    """

    def __init__(self, rng: np.random.Generator | int | None = None) -> None:
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = choices[int(self.rng.integers(len(choices)))]
        self.params[name] = value
        return value
