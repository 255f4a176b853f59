"""The exception tree of ``spaces``: every error a user can cause names what to fix."""

from __future__ import annotations

__all__ = [
    "SpacesError",
    "UnknownSpaceError",
    "InvalidConfigError",
    "InvalidArchitectureError",
    "DataNotFoundError",
    "UnknownMetricError",
    "ExportError",
    "LoadError",
    "CheckpointError",
]


class SpacesError(Exception):
    """Base class of every error raised by :mod:`spaces`."""


class UnknownSpaceError(SpacesError, KeyError):
    """A space name that is not registered."""

    def __init__(self, name: str, valid: list[str]) -> None:
        self.name, self.valid = name, valid
        super().__init__(f"unknown space {name!r}; valid: {', '.join(valid)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class InvalidConfigError(SpacesError, ValueError):
    """A space configuration value (e.g. ``dataset``) that the space does not accept."""

    def __init__(self, field: str, given: object, valid: object) -> None:
        self.field, self.given, self.valid = field, given, valid
        super().__init__(f"{field}: got {given!r}; valid: {valid}")


class InvalidArchitectureError(SpacesError, ValueError):
    """An architecture that does not belong to the space it claims."""


class UnknownMetricError(SpacesError, KeyError):
    """A metric (or device of a metric) that the space cannot report."""

    def __init__(self, field: str, given: object, valid: object) -> None:
        self.field, self.given, self.valid = field, given, valid
        super().__init__(f"{field}: got {given!r}; valid: {valid}")

    def __str__(self) -> str:
        return self.args[0]


class DataNotFoundError(SpacesError, FileNotFoundError):
    """A benchmark data file is missing under ``NAS_BENCHMARK_DATA``."""


class ExportError(SpacesError, ValueError):
    """An export that cannot be made: unknown format, existing target, no stored weights."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class LoadError(SpacesError, ValueError):
    """``load_architecture`` could not build the model: a missing file, weights that are
    missing or do not match the network, a URL that does not answer."""


class CheckpointError(SpacesError, ValueError):
    """A checkpoint to import as a parent that cannot be read, or whose tensors do not match
    the network it describes (the message names the tensor, its shape and the expected one)."""
