"""``Strategy``: proposes architectures in batches and learns from their results."""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from spaces import Architecture, SearchSpace

from ..errors import SpecError
from ..problem import Problem
from ..storage.records import TrialRecord

__all__ = ["Proposal", "SearchContext", "Strategy", "dump_state", "load_state"]


def _plain(o: Any) -> Any:
    """numpy scalars and arrays as the Python values JSON holds (a state is our data, never a library's)."""
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"a strategy state holds JSON values, not {type(o).__name__}")


def dump_state(state: dict[str, Any]) -> bytes:
    """A strategy state as UTF-8 JSON (what ``Strategy.get_state`` returns)."""
    return json.dumps(state, default=_plain, sort_keys=True).encode()


def load_state(state: bytes | None) -> dict[str, Any]:
    """The dict ``dump_state`` wrote; ``{}`` for a new job and for a state an older release
    wrote as a pickle, which is never unpickled: each strategy rebuilds from the trials."""
    if not state:
        return {}
    try:
        saved = json.loads(state.decode())
    except (UnicodeDecodeError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _check_param(key: str, value: Any, kind: Any, lo: float | None = None, hi: float | None = None) -> None:
    field = f"strategy.{key}"
    if isinstance(kind, tuple):
        if value not in kind:
            raise SpecError(field, value, ", ".join(map(str, kind)))
        return
    if kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(field, value, "true or false")
        return
    if kind == "float?" and value is None:
        return
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "int" and not (numeric and float(value).is_integer()):
        raise SpecError(field, value, "an integer" + (f" >= {lo}" if lo is not None else ""))
    if not numeric:
        raise SpecError(field, value, "a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if lo is not None and hi is not None else (f">= {lo}" if lo is not None else f"<= {hi}")
        raise SpecError(field, value, f"{'an integer' if kind == 'int' else 'a number'} {rng}")


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
    3. ``get_state()`` after each ``tell``: plain JSON of the strategy's own data
       (``dump_state``), never a pickle of a library's objects, whose internals change
       between releases; what a library's object needs is rebuilt in ``start`` (from the seed
       and the trials, see the Optuna strategies).

    ``check_runtime(space, problem)`` runs once before a job is stored: a strategy that cannot
    run with the installed libraries (``requires``: distribution -> version range) raises
    :class:`SpecError` there, not after minutes of evaluations.

    Determinism: for a given seed and history, a strategy proposes the same architectures,
    and ``start`` from (history, state) continues exactly as an uninterrupted run would.
    """

    name: ClassVar[str]
    # False for drivers that need a kind of space (ordered choices): they refuse the others in start()
    any_space: ClassVar[bool] = True
    defaults: ClassVar[dict[str, Any]] = {"batch_size": 10}
    # parameter -> (kind, min, max); kind is "int", "float", "bool", "float?" (None allowed) or
    # a tuple of allowed values. Checked at construction, i.e. before a job row exists.
    rules: ClassVar[dict[str, tuple]] = {}
    # distributions the strategy drives, with the versions it is tested with (pip specifiers)
    requires: ClassVar[dict[str, str]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise SpecError(f"strategy.{unknown[0]}", params[unknown[0]],
                            f"parameters of {self.name}: {', '.join(self.defaults)}", reason="unknown parameter")
        self.params = {**self.defaults, **params}
        for key, rule in {"batch_size": ("int", 1, None), **self.rules}.items():
            _check_param(key, self.params[key], *rule)

    @property
    def batch_size(self) -> int:
        return int(self.params["batch_size"])

    def check_runtime(self, space: SearchSpace, problem: Problem) -> None:
        """Raise :class:`SpecError` when this strategy cannot run here (see the class docstring)."""
        from importlib.metadata import PackageNotFoundError, version

        from packaging.specifiers import SpecifierSet

        for dist, spec in self.requires.items():
            try:
                have = version(dist)
            except PackageNotFoundError:
                raise SpecError("strategy.name", self.name, "", reason=(
                    f"it needs {dist}{spec}, which is not installed: pip install '{dist}{spec}'")) from None
            if not SpecifierSet(spec).contains(have, prereleases=True):
                raise SpecError("strategy.name", self.name, "", reason=(
                    f"it needs {dist}{spec}; {dist} {have} is installed: pip install '{dist}{spec}'"))

    @abc.abstractmethod
    def start(self, ctx: SearchContext, history: Sequence[TrialRecord], state: bytes | None) -> None: ...

    @abc.abstractmethod
    def propose(self, n: int) -> list[Proposal]: ...

    @abc.abstractmethod
    def tell(self, proposals: Sequence[Proposal], trials: Sequence[TrialRecord]) -> list[dict[str, Any] | None]: ...

    @abc.abstractmethod
    def get_state(self) -> bytes: ...
