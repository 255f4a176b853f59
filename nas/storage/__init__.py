"""SQL storage of jobs, trials and architectures (SQLAlchemy 2.0 + Alembic)."""

from .records import JOB_STATES, TRIAL_STATES, JobRecord, RoundRecord, TrialRecord
from .store import DATABASE_ENV_VAR, Store, default_database_url

__all__ = ["Store", "default_database_url", "DATABASE_ENV_VAR", "JobRecord", "TrialRecord", "RoundRecord",
           "JOB_STATES", "TRIAL_STATES"]
