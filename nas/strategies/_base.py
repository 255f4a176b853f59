"""``Strategy``: proposes architectures in batches and learns from their results."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spaces import Architecture, SearchSpace

from ..errors import SpecError
from ..problem import Problem
from ..storage.records import TrialRecord

__all__ = ["Proposal", "SearchContext", "Strategy"]


@dataclass(frozen=True)
class Proposal:
    """One candidate to evaluate, with where it came from (stored with the trial)."""

    arch: Architecture
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchContext:
    space: SearchSpace
    problem: Problem
    seed: int
    budget: int
    log: Callable[[str], None] = print


class Strategy(abc.ABC):
    """Base of every search strategy.

    Call order (driver process only, not thread-safe):

    1. ``start(ctx, history, state)`` once: ``history`` is every trial of the job so far, in
       number order; ``state`` is what ``get_state()`` returned when the last round was saved
       (``None`` for a new job).
    2. Then rounds of ``propose(n)`` (at most ``n`` proposals; an empty list means the space
       is exhausted) followed by exactly one ``tell(proposals, trials)`` with the trials in the
       same order. ``tell`` returns, per trial, the replay data the strategy needs to rebuild
       itself on resume (stored in the trial's ``sampler`` column), or ``None``.
    3. ``get_state()`` after each ``tell``.

    Determinism: for a given seed and history, a strategy proposes the same architectures,
    and ``start`` from (history, state) continues exactly as an uninterrupted run would.
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 10}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise SpecError(f"strategy.{unknown[0]}", params[unknown[0]],
                            f"parameters of {self.name}: {', '.join(self.defaults)}", reason="unknown parameter")
        self.params = {**self.defaults, **params}
        bs = self.params["batch_size"]
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            raise SpecError("strategy.batch_size", bs, "an integer >= 1")

    @property
    def batch_size(self) -> int:
        return int(self.params["batch_size"])

    @abc.abstractmethod
    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None: ...

    @abc.abstractmethod
    def propose(self, n: int) -> list[Proposal]: ...

    @abc.abstractmethod
    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]: ...

    @abc.abstractmethod
    def get_state(self) -> bytes: ...
