"""Flow-control limits (0019_flow_control.sql): a user reads those on their own jobs (to learn
why they wait), the service every one; setting or removing one holds back every owner's work, so it is the service's. The target
(a function or a queue name) may hold a slash, so it is the rest of the path."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ...auth import Principal
from ..models import ErrorOut, LimitIn, LimitListOut, LimitOut
from ..security import api_state, principal
from . import queues  # noqa: F401  (registers the `queue` path convertor: the rest of the path)
from .tasks import AUTH_ERRORS

STEER_ERRORS = {**AUTH_ERRORS, 403: {"model": ErrorOut, "description": "A user's credential cannot change limits"}}

router = APIRouter(tags=["limits"])


@router.get("/api/limits", response_model=None, responses={200: {"model": LimitListOut}, **AUTH_ERRORS})
async def list_limits(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """The limits the caller may see (every one for the service, those on a user's own jobs): on
    what (a function or a queue), how many running at once, how many starts per window, per key
    or not, and whether code or an operator set it."""
    return JSONResponse({"limits": await api_state(request).ops.limits.list(caller)})


@router.put("/api/limits/{scope}/{target:queue}", response_model=None,
            responses={200: {"model": LimitOut}, **STEER_ERRORS})
async def set_limit(request: Request, scope: str, target: str, body: LimitIn,
                    caller: Principal = Depends(principal)) -> JSONResponse:
    """Add or replace the limit on function or queue ``target`` (scope is `function` or
    `queue`); every worker's next claim enforces it. It wins over a limit declared in code."""
    row = await api_state(request).ops.limits.set(
        caller, scope, target, per_key=body.per_key, concurrency=body.concurrency, rate_count=body.rate_count,
        rate_seconds=body.rate_seconds)
    return JSONResponse(row)


@router.delete("/api/limits/{scope}/{target:queue}", response_model=None,
               responses={200: {"model": LimitOut}, 404: {"model": ErrorOut, "description": "No such limit"},
                          **STEER_ERRORS})
async def remove_limit(request: Request, scope: str, target: str, caller: Principal = Depends(principal),
                       per_key: bool = Query(False, description="The per-key limit, not the overall one")
                       ) -> JSONResponse:
    """Remove a limit; the jobs it held are claimed at the next claim."""
    return JSONResponse(await api_state(request).ops.limits.remove(caller, scope, target, per_key=per_key))
