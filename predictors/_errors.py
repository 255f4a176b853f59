"""The exception tree of ``predictors``."""

__all__ = ["PredictorError", "UnknownPredictorError"]


class PredictorError(Exception):
    """Base class of every error raised by :mod:`predictors`."""


class UnknownPredictorError(PredictorError, ValueError):
    def __init__(self, name: str, valid: list[str]) -> None:
        self.name, self.valid = name, valid
        super().__init__(f"name: got {name!r}; valid predictors: {', '.join(valid)}")
