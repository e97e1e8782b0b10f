"""The function gateway: GET|POST /functions/v1/<name> invokes a function of the served App
synchronously and answers with its result (the Edge Function runtime of seed 000).

- The payload is the JSON body of a POST (an object; empty means ``{}``) or the query
  parameters of a GET (a repeated parameter becomes a list).
- A function needs a credential unless it was registered with ``verify_jwt=False``. Without a
  credential, an unknown name answers 401, not 404, so functions cannot be enumerated.
- It runs for at most the function's ``timeout`` (else DEFAULT_TIMEOUT seconds): 504 after. A
  sync handler runs in a thread, which cannot be interrupted: it finishes on its own.
- ``Fail(reason)`` and ``Cancel(reason)`` answer 400 with the reason; ``RetryIn(seconds)`` 503
  with Retry-After; any other exception 502 ``function_failed`` with its first line (the
  traceback goes to the log).
- The result is answered as JSON of at most MAX_PAYLOAD_BYTES (1 MiB), else 502. It is never
  stored, so unlike a job's result it may hold NUL characters (U+0000), which PostgreSQL
  refuses in jsonb: a payload that has one can be echoed back.
- An invocation is not a job: nothing is written to jobline.jobs and there is no retry. A
  handler that takes a context gets one with ``job_id`` None, attempt 1 of 1, the caller's user
  as ``owner`` (None for the service or an unverified call) and the database store.
- The built-ins ``sql`` and ``http`` cannot be invoked here (404): enqueue them as the service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response

from ...errors import Cancel, Fail, FunctionNotFound, InvalidInput, RetryIn, Snooze
from ...job import BUILTIN_FUNCTIONS, MAX_PAYLOAD_BYTES
from ...runtime.executor import first_line
from ...runtime.registry import Function
from ..errors import ApiError
from ..models import ErrorOut
from ..security import api_state, authenticate_request, bearer_scheme
from .tasks import AUTH_ERRORS

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
NAME = Path(min_length=1, max_length=200, description="A function registered in the served App")
RESPONSES = {200: {"description": "The function's result, as JSON", "content": {"application/json": {"schema": {}}}},
             **AUTH_ERRORS,
             400: {"model": ErrorOut, "description": "The handler refused the call (Fail or Cancel), or malformed JSON"},
             404: {"model": ErrorOut, "description": "No such function"},
             502: {"model": ErrorOut, "description": "function_failed: the handler raised"},
             503: {"model": ErrorOut, "description": "retry: the handler asked to be called again later"},
             504: {"model": ErrorOut, "description": "timeout"}}

router = APIRouter(tags=["functions"])


@router.post("/functions/v1/{name}", response_model=None, responses=RESPONSES,
             openapi_extra={"requestBody": {"required": False, "content": {"application/json": {
                 "schema": {"type": "object", "description": "The payload"}}}}})
async def invoke_post(request: Request, name: str = NAME, _=Depends(bearer_scheme)) -> Response:
    """Invoke a function with the JSON body as its payload."""
    function, owner = await _invocable(request, name)
    raw = await request.body()
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"the payload must be a JSON object, got {type(payload).__name__}")
    return await _invoke(request, function, payload, owner)


@router.get("/functions/v1/{name}", response_model=None, responses=RESPONSES)
async def invoke_get(request: Request, name: str = NAME, _=Depends(bearer_scheme)) -> Response:
    """Invoke a function with the query parameters as its payload."""
    function, owner = await _invocable(request, name)
    payload: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in payload:
            previous = payload[key]
            payload[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            payload[key] = value
    return await _invoke(request, function, payload, owner)


async def _invocable(request: Request, name: str) -> tuple[Function, str | None]:
    """The function ``name`` names and the caller's owner, authenticating the caller unless the
    function is public (FunctionNotFound for the built-ins and unknown names)."""
    app = api_state(request).app
    function = None if name in BUILTIN_FUNCTIONS else app.registry.find(name)
    if function is not None and not function.verify_jwt:
        return function, None
    caller = await authenticate_request(request)
    if function is None:
        raise FunctionNotFound(f"no function named {name!r} can be invoked here")
    return function, caller.owner


async def _invoke(request: Request, function: Function, payload: dict, owner: str | None) -> Response:
    api = api_state(request)
    timeout = function.timeout or DEFAULT_TIMEOUT
    began = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            value = await api.app.invoke_async(function, payload, owner=owner, threads=api.threads,
                                               connections=api.connections)
        body = _response_json(value)
    except Fail as signal:
        raise ApiError(400, "fail", signal.reason) from None
    except Cancel as signal:
        raise ApiError(400, "cancel", signal.reason) from None
    except (RetryIn, Snooze) as signal:  # no job to put back: the caller is told when to call again
        seconds = max(1, math.ceil(signal.seconds))
        raise ApiError(503, "retry", signal.reason, {"Retry-After": str(seconds)}) from None
    except TimeoutError:
        if time.perf_counter() - began < timeout:
            raise _failed(function, TimeoutError("the handler raised TimeoutError")) from None
        log.warning("function.timed_out", extra={"function": function.name, "timeout_s": timeout})
        raise ApiError(504, "timeout", f"{function.name!r} did not finish within {timeout:g} s") from None
    except InvalidInput as exc:  # the result is not JSON, or too large
        raise _failed(function, exc) from None
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the user's handler failed: their error, reported as such
        raise _failed(function, exc) from None
    log.debug("function.invoked", extra={"function": function.name,
                                         "duration_ms": round((time.perf_counter() - began) * 1000, 1)})
    return Response(body, media_type="application/json")




def _response_json(value: Any) -> bytes:
    """The result as the response body. Not job.encode_result: nothing here is stored, so its
    check for NUL characters (which only PostgreSQL minds) does not apply."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        try:
            body = text.encode()
        except UnicodeEncodeError:
            # A lone surrogate, e.g. echoed from a "\ud800" escape in the payload: UTF-8 cannot
            # carry it, JSON's escape can.
            body = json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"result is not JSON-serialisable: {exc}") from None
    if len(body) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"result is larger than the {MAX_PAYLOAD_BYTES} bytes limit")
    return body


def _failed(function: Function, exc: BaseException) -> ApiError:
    log.warning("function.failed", extra={"function": function.name}, exc_info=exc)
    line = first_line(f"{type(exc).__name__}: {exc}", limit=500) or type(exc).__name__
    return ApiError(502, "function_failed", f"{function.name!r} failed: {line}")
