"""Errors users can catch, and the signals a handler raises to steer its job.

Every error has a stable ``code`` (used by the CLI's JSON output and, later, the HTTP API).
Messages say what happened and what to do next.
"""

from __future__ import annotations

from typing import Any


class JoblineError(Exception):
    """Base class of every error jobline raises on purpose."""

    code = "internal"


class ConfigError(JoblineError):
    """A JOBLINE_* setting is missing or wrong, or the embedded PostgreSQL cannot start."""

    code = "config"


class DatabaseError(JoblineError):
    """PostgreSQL refused or failed a statement; the psycopg error is kept as ``__cause__``."""

    code = "database"


class InvalidInput(JoblineError):
    """Something given to jobline (a name, payload, number, date) is malformed."""

    code = "invalid_input"


class DestinationBlocked(InvalidInput):
    """An outbound HTTP call was refused by the egress policy (see egress.py) before connecting:
    the host, the address it resolved to and the rule are named, with how to allow it."""

    code = "destination_blocked"

    def __init__(self, message: str, *, host: str | None = None, address: str | None = None, rule: str = ""):
        super().__init__(message)
        self.host = host
        self.address = address
        self.rule = rule


class NotFound(JoblineError):
    code = "not_found"


class FunctionNotFound(NotFound):
    code = "function_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class ScheduleNotFound(NotFound):
    code = "schedule_not_found"


class PipelineNotFound(NotFound):
    """No pipeline of that name is recorded, or no run of that id is the caller's."""

    code = "pipeline_not_found"


class SecretNotFound(NotFound):
    code = "secret_not_found"


class SecretError(JoblineError):
    """A stored secret cannot be decrypted: its master key is not in JOBLINE_MASTER_KEY, or its
    row was altered or moved to another name. The message never holds key bytes or plaintext."""

    code = "secret"


class Conflict(JoblineError):
    """The request is valid but the job's state does not allow it (e.g. retrying a running job)."""

    code = "conflict"


class LeaseLost(Conflict):
    """A report on a task whose lease the reporter no longer holds: it expired and the task was
    rescued, or a person cancelled it. The report changes nothing."""

    code = "lease_lost"


class AuthError(JoblineError):
    code = "auth"


class Unauthenticated(AuthError):
    """No credential, or one that is not the service key, a valid signed JWT or a live API token."""

    code = "unauthenticated"


class Forbidden(AuthError):
    """A valid credential without the right: it maps to no user, or the route is service-only."""

    code = "forbidden"


class Unavailable(JoblineError):
    """A jobline HTTP endpoint did not answer (connection error, timeout or 5xx) and the client
    has no database to fall back on (see jobline.Client)."""

    code = "unavailable"


class RateLimited(Unavailable):
    """The server answered 429: too many requests (failed authentications) from this address.
    Not a verdict on the request: send it again after ``retry_after`` seconds (None when the
    server did not say). It never falls back to the database, since the server is up."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# Handler signals: raised by a handler to decide its job's fate. They are not failures of
# jobline, so they do not derive from JoblineError.


# Fail, Retry and RetryIn take an optional ``result``: what the attempt got although it failed,
# kept as the job's result (a JSON value, as a handler returns). The http function keeps the
# response of a 404 or a 503 this way, which jobline._http_response shows.


class Fail(Exception):
    """Fail the job now, without further retries."""

    def __init__(self, reason: str = "failed by handler", *, result: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.result = result


class Retry(Exception):
    """Retry the job after its function's backoff (counts as an attempt; the last attempt fails
    the job). Raising any other exception does the same; this one records only the exception's
    type and reason, no traceback, and can keep a result."""

    def __init__(self, reason: str = "retry requested by handler", *, result: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.result = result


class RetryIn(Exception):
    """Retry the job after ``seconds`` (counts as an attempt)."""

    def __init__(self, seconds: float, reason: str = "retry requested by handler", *, result: Any = None):
        if not 0 <= seconds <= 366 * 86400:
            raise InvalidInput(f"RetryIn seconds must be between 0 and one year, got {seconds!r}")
        super().__init__(reason)
        self.seconds = float(seconds)
        self.reason = reason
        self.result = result


class Cancel(Exception):
    """Cancel the job (and its dependants) without running it again."""

    def __init__(self, reason: str = "cancelled by handler"):
        super().__init__(reason)
        self.reason = reason


class Snooze(Exception):
    """Run the job again after ``seconds`` without spending an attempt: durable waiting (poll an
    external system, wait for a window). The attempt is recorded with outcome ``snoozed`` and the
    job's budget grows by one, so max_attempts counts only attempts that ran and failed.

    >>> raise Snooze(300)  # doctest: +SKIP
    """

    def __init__(self, seconds: float, reason: str | None = None):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 366 * 86400:
            raise InvalidInput(f"Snooze seconds must be between 0 and one year, got {seconds!r}")
        super().__init__(reason or f"snoozed for {seconds:g} s")
        self.seconds = float(seconds)
        self.reason = reason or f"snoozed for {seconds:g} s"
