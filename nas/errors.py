"""The exception tree of ``nas``. Every user-caused error names the field, what was given and what is valid."""

from __future__ import annotations

__all__ = ["NasError", "SpecError", "JobNotFoundError", "JobConflictError", "StorageError", "EvaluationError",
           "StrategyError", "JobCancelled"]


class NasError(Exception):
    """Base class of every error raised by :mod:`nas`."""


class SpecError(NasError, ValueError):
    """A job spec that cannot run: ``field: got X; valid: Y``."""

    def __init__(self, field: str, given: object, valid: object, *, reason: str = "") -> None:
        self.field, self.given, self.valid = field, given, valid
        msg = f"{field}: got {given!r}"
        if reason:
            msg += f" ({reason})"
        if valid not in (None, ""):
            msg += f"; valid: {valid}"
        super().__init__(msg)


class JobNotFoundError(NasError, LookupError):
    def __init__(self, job_id: str, where: str = "") -> None:
        self.job_id = job_id
        super().__init__(f"job_id: got {job_id!r} (no such job{f' in {where}' if where else ''}); "
                         "valid: an id listed by `nas jobs`")


class ArchitectureNotFoundError(NasError, LookupError):
    """An architecture id that the job (or any job) has not measured."""

    field = "arch_id"


class JobConflictError(NasError):
    """Another process owns the job (one writer per job)."""


class StorageError(NasError):
    """The database could not be opened or migrated."""


class EvaluationError(NasError):
    """An evaluation tier failure that is not a per-trial failure (e.g. Ray could not start)."""


class StrategyError(NasError):
    """A fault in a strategy's own code (a bug, or a library it drives that changed), as
    opposed to an evaluation that failed on one architecture (a trial in state ``fail``)."""

    def __init__(self, strategy: str, step: str, error: BaseException) -> None:
        self.strategy, self.step, self.error = strategy, step, error
        super().__init__(f"internal error in strategy {strategy} ({step}): {type(error).__name__}: {error}")


class JobCancelled(NasError):
    """Raised inside a job's loop when a cancel was requested (API, runner shutdown)."""
