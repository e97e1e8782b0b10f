"""jobline: a PostgreSQL-native job queue, scheduler and function runner."""

from .app import App
from .client import ClaimedTask, Client
from .errors import (
    AuthError,
    Cancel,
    ConfigError,
    Conflict,
    DatabaseError,
    DestinationBlocked,
    Fail,
    Forbidden,
    FunctionNotFound,
    InvalidInput,
    JoblineError,
    JobNotFound,
    LeaseLost,
    NotFound,
    RateLimited,
    Retry,
    RetryIn,
    PipelineNotFound,
    ScheduleNotFound,
    SecretError,
    SecretNotFound,
    Snooze,
    Unauthenticated,
    Unavailable,
)
from .job import Attempt, Job, JobStatus
from .pipeline import Step
from .retry import Backoff
from .runtime.context import JobContext
from .operations.tasks import Task

__version__ = "0.1.0"

__all__ = [
    "App", "Attempt", "AuthError", "Backoff", "Cancel", "ClaimedTask", "Client", "ConfigError", "Conflict", "DatabaseError",
    "DestinationBlocked", "Fail", "Forbidden", "FunctionNotFound", "InvalidInput", "Job", "JobContext",
    "JobNotFound", "JobStatus", "JoblineError", "LeaseLost", "NotFound", "PipelineNotFound", "RateLimited", "Retry", "RetryIn", "ScheduleNotFound",
    "SecretError", "SecretNotFound", "Snooze", "Step",
    "Task", "Unauthenticated", "Unavailable", "__version__",
]
