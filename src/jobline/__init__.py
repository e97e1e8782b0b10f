"""jobline: a PostgreSQL-native job queue, scheduler and function runner."""

from .app import App
from .errors import (
    Cancel,
    ConfigError,
    Conflict,
    DatabaseError,
    DestinationBlocked,
    Fail,
    FunctionNotFound,
    InvalidInput,
    JoblineError,
    JobNotFound,
    NotFound,
    RetryIn,
    SecretError,
    SecretNotFound,
)
from .job import Attempt, Job, JobStatus
from .retry import Backoff
from .runtime.context import JobContext

__version__ = "0.1.0"

__all__ = [
    "App", "Attempt", "Backoff", "Cancel", "ConfigError", "Conflict", "DatabaseError", "DestinationBlocked", "Fail",
    "FunctionNotFound", "InvalidInput", "Job", "JobContext", "JobNotFound", "JobStatus",
    "JoblineError", "NotFound", "RetryIn", "SecretError", "SecretNotFound", "__version__",
]
