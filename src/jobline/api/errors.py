"""Errors as HTTP: one table from error class to status, and one JSON shape for every error.

Every error answer is ``{"error": {"code": ..., "message": ...}}``. A 4xx says what was wrong
with the request and how to fix it; a 5xx says only what kind of failure it was, because its
detail (a database message, a traceback) may describe the server: that goes to the server's log.
No message ever holds a credential: the auth errors' messages are constants.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (ConfigError, Conflict, DatabaseError, Forbidden, InvalidInput, JobNotFound, JoblineError,
                      LeaseLost, NotFound, ScheduleNotFound, Unauthenticated)

log = logging.getLogger(__name__)

# Class -> status; the most specific class in an error's MRO wins (LeaseLost before Conflict).
STATUS: dict[type[JoblineError], int] = {
    InvalidInput: 422,
    NotFound: 404,
    LeaseLost: 409,
    Conflict: 409,
    Unauthenticated: 401,
    Forbidden: 403,
    DatabaseError: 503,
    ConfigError: 500,
    JoblineError: 500,
}

# What a 5xx says instead of the error's own message.
SERVER_MESSAGES = {
    500: "internal error: the server could not handle this request (its log has the details)",
    503: "the database is unavailable or refused this request; try again shortly",
}

# Another user's job answers exactly as a job that does not exist: one message, whatever the
# id, so the body is byte-identical in both cases and there is no existence oracle.
JOB_NOT_FOUND = "no job or task with this id is visible to this credential"
SCHEDULE_NOT_FOUND = "no schedule with this name or id is visible to this credential"

BEARER = {"WWW-Authenticate": "Bearer"}


class ApiError(HTTPException):
    """An error the API itself raises, with its code. An HTTPException, so that FastAPI's body
    parsing lets it through unchanged (a body over the size limit is detected there)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=dict(headers) if headers else None)
        self.code = code
        self.message = message


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=dict(headers) if headers else None)


def status_of(exc: JoblineError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def jobline_error_response(exc: JoblineError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        log.error("request.failed", extra={"code": exc.code, "error": str(exc)}, exc_info=exc)
        return error_response(status, exc.code if status == 503 else "internal", SERVER_MESSAGES[status])
    # One fixed text each: another user's job or schedule answers exactly as a missing one.
    message = (JOB_NOT_FOUND if isinstance(exc, JobNotFound)
               else SCHEDULE_NOT_FOUND if isinstance(exc, ScheduleNotFound) else str(exc))
    return error_response(status, exc.code, message, BEARER if status == 401 else None)


async def on_jobline_error(request: Request, exc: JoblineError) -> JSONResponse:
    return jobline_error_response(exc)


async def on_http_exception(request: Request, exc: HTTPException) -> JSONResponse:
    if isinstance(exc, ApiError):
        return error_response(exc.status_code, exc.code, exc.message, exc.headers)
    if exc.status_code == 404:
        return error_response(404, "not_found", f"no route {request.method} {request.url.path}; "
                                                "GET /openapi.json lists the routes")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed here; allowed: {allowed}",
                              exc.headers)
    if exc.status_code == 400:  # FastAPI could not read the body (e.g. JSON nested too deeply)
        return error_response(400, "invalid_json", "the request body could not be read as JSON")
    return error_response(exc.status_code, "http_error", str(exc.detail))


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "malformed")
        where = bad_json["loc"][1] if len(bad_json.get("loc", ())) > 1 else "?"
        return error_response(400, "invalid_json", f"the request body is not valid JSON: {reason} at character {where}")
    return error_response(422, "invalid_input", validation_message(errors))


def validation_message(errors: Sequence[Mapping[str, Any]], limit: int = 3) -> str:
    """Name each bad field and say what is wrong with it, never echoing the value sent."""
    parts = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors[:limit]]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "invalid input: " + "; ".join(parts) + more


def _where(loc: Sequence[Any]) -> str:
    """('body', 'depends_on', 0) -> 'body field depends_on[0]'; ('query', 'limit') -> 'query parameter limit'."""
    if not loc:
        return "request"
    kind, rest = loc[0], loc[1:]
    path = ""
    for part in rest:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    label = {"body": "body field", "query": "query parameter", "path": "path parameter",
             "header": "header"}.get(kind, str(kind))
    if not path:
        return "body" if kind == "body" else label
    return f"{label} {path}"


async def on_unicode_error(request: Request, exc: UnicodeError) -> JSONResponse:
    # A JSON string may hold a lone surrogate (\ud800), which Python accepts and PostgreSQL's
    # UTF-8 cannot store: the client's input, not a server failure.
    return error_response(422, "invalid_input", "the request holds text that is not valid Unicode "
                                                "(a lone surrogate such as \\ud800)")


def install(app) -> None:
    app.add_exception_handler(JoblineError, on_jobline_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(UnicodeError, on_unicode_error)
