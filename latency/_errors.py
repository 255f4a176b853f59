"""The exception tree of ``latency``: every error a user can cause names what to fix."""

from __future__ import annotations

__all__ = ["LatencyError", "UnknownBackendError", "BackendNotInstalledError", "InvalidMeasurementError",
           "InvalidTargetError", "UnknownLatencyModelError", "ProfilingError"]


class LatencyError(Exception):
    """Base class of every error raised by :mod:`latency`."""


class InvalidTargetError(LatencyError, ValueError):
    """A Target field with a bad value: ``<field>: got <value>; valid: <...>``."""

    def __init__(self, field: str, got: object, valid: str) -> None:
        self.field, self.got, self.valid = field, got, valid
        super().__init__(f"{field}: got {got!r}; valid: {valid}")


class UnknownBackendError(InvalidTargetError):
    def __init__(self, got: object, valid: list[str]) -> None:
        super().__init__("target.backend", got, ", ".join(valid))


class BackendNotInstalledError(LatencyError, ImportError):
    """The backend exists but its runtime is missing on this machine; the message says what to install."""

    def __init__(self, backend: str, hint: str) -> None:
        self.backend, self.hint = backend, hint
        super().__init__(f"backend {backend!r} is not installed here: {hint}")


class InvalidMeasurementError(LatencyError, ValueError):
    """A measurement that cannot be true (negative, NaN or infinite times); the message says why."""


class UnknownLatencyModelError(LatencyError, ValueError):
    def __init__(self, name: str, valid: list[str]) -> None:
        self.name, self.valid = name, valid
        super().__init__(f"name: got {name!r}; valid latency models: {', '.join(valid)}")


class ProfilingError(LatencyError, RuntimeError):
    """A network could not be exported, compiled or run by a backend."""
