"""The search engine: job specs, strategies, evaluation on Ray, SQL storage, Pareto analysis."""

from .engine import JobResult, Progress, prepare_job, run_job
from .errors import (EvaluationError, JobConflictError, JobNotFoundError, NasError, SpecError, StorageError,
                     StrategyError)
from .pareto import hypervolume, normalized_hypervolume, pareto_front
from .spec import JobSpec, load_spec

__all__ = ["run_job", "prepare_job", "JobResult", "Progress", "JobSpec", "load_spec", "pareto_front",
           "hypervolume", "normalized_hypervolume", "NasError", "SpecError", "JobNotFoundError",
           "JobConflictError", "StorageError", "EvaluationError", "StrategyError"]
