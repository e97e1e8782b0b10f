"""Remote workers: claim-next-task (seed 004) and the reports on a claimed task.

Everything is scoped to the caller in SQL (operations/tasks.py, policy.py): a user claims and
reports only on their own tasks, the service on anyone's; another user's task answers 404
exactly as one that does not exist. A report whose lease was lost is 409 ``lease_lost``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from ...auth import Principal
from ..models import (MAX_ID, ClaimIn, CompleteIn, CompleteManyIn, ErrorOut, FailIn, HeartbeatIn, HeartbeatOut,
                      ReportManyOut, ReportOut, SnoozeIn, TaskOut, TasksOut)
from ..security import api_state, principal

AUTH_ERRORS = {401: {"model": ErrorOut, "description": "Missing or invalid credential"},
               403: {"model": ErrorOut, "description": "A valid credential that maps to no user"},
               429: {"model": ErrorOut, "description": "Too many failed authentications from this address"}}
REPORT_ERRORS = {**AUTH_ERRORS,
                 404: {"model": ErrorOut, "description": "No such task (or not the caller's)"},
                 409: {"model": ErrorOut, "description": "lease_lost: the lease expired or the task was cancelled"}}

TaskId = Annotated[int, Path(ge=1, le=MAX_ID, description="The task_id (a job id)")]

router = APIRouter(tags=["tasks"])


@router.post("/functions/v1/claim-next-task", response_model=None, responses={
    200: {"model": TaskOut | TasksOut, "description": 'The claimed task; with `limit`, {"tasks": [...]}'},
    204: {"description": "Nothing is claimable"}, **AUTH_ERRORS})
async def claim_next_task(request: Request, caller: Principal = Depends(principal),
                          body: ClaimIn | None = Body(None)) -> Response:
    """Claim the next task: higher priority first, then earlier run_at, then earlier creation;
    only the caller's own tasks for a user, any owner's for the service. Without ``task_types``
    only remote task types are handed out. The task is leased for JOBLINE_REMOTE_LEASE_SECONDS:
    report on it (complete, fail) or extend the lease (heartbeat) with its ``lease_token``.
    With ``limit``, up to that many tasks in one statement, answered as ``{"tasks": [...]}``
    (an empty list when nothing is claimable): one shape per request, so a client that asks
    for a batch always parses a batch."""
    ops = api_state(request).ops.tasks
    types = body.task_types if body else None
    if body is not None and body.limit is not None:
        claimed = await ops.claim_many(caller, types, body.limit)
        return JSONResponse({"tasks": [task.to_dict() for task in claimed]})
    task = await ops.claim(caller, types)
    if task is None:
        return Response(status_code=204)
    return JSONResponse(task.to_dict())


@router.post("/api/tasks/complete", response_model=ReportManyOut, responses=AUTH_ERRORS)
async def complete_tasks(request: Request, body: CompleteManyIn, caller: Principal = Depends(principal)) -> dict:
    """Record the success of up to 100 tasks in one request (a batch claim's tasks: one lease
    check and one write per lease token). Each report stands alone: the answer gives each
    task's ``status``, ``succeeded``, or ``lease_lost`` / ``not_found`` where the single report
    would have answered 409 / 404."""
    done = await api_state(request).ops.tasks.complete_many(
        caller, [(r.task_id, r.lease_token, r.result) for r in body.reports])
    return {"reports": [{"task_id": task_id, "status": status} for task_id, status in done]}


@router.post("/api/tasks/{id}/complete", response_model=ReportOut, responses=REPORT_ERRORS)
async def complete_task(request: Request, id: TaskId, body: CompleteIn,
                        caller: Principal = Depends(principal)) -> dict:
    """Record the task's success with its ``result``."""
    status = await api_state(request).ops.tasks.complete(caller, id, body.lease_token, body.result)
    return {"task_id": id, "status": status}


@router.post("/api/tasks/{id}/fail", response_model=ReportOut, responses=REPORT_ERRORS)
async def fail_task(request: Request, id: TaskId, body: FailIn, caller: Principal = Depends(principal)) -> dict:
    """Record a failed attempt: ``status`` is ``pending`` when it will be retried (after
    ``retry_in`` seconds, or the backoff), else ``failed``."""
    status = await api_state(request).ops.tasks.fail(caller, id, body.lease_token, body.error,
                                                     retryable=body.retryable, retry_in=body.retry_in)
    return {"task_id": id, "status": status}


@router.post("/api/tasks/{id}/snooze", response_model=ReportOut, responses=REPORT_ERRORS)
async def snooze_task(request: Request, id: TaskId, body: SnoozeIn, caller: Principal = Depends(principal)) -> dict:
    """Put the task back for ``seconds`` without spending an attempt (a handler's Snooze):
    recorded as a ``snoozed`` attempt; ``status`` is ``pending``."""
    status = await api_state(request).ops.tasks.snooze(caller, id, body.lease_token, body.seconds)
    return {"task_id": id, "status": status}


@router.post("/api/tasks/{id}/heartbeat", response_model=HeartbeatOut, responses=REPORT_ERRORS)
async def heartbeat_task(request: Request, id: TaskId, body: HeartbeatIn,
                         caller: Principal = Depends(principal)) -> dict:
    """Extend the lease to JOBLINE_REMOTE_LEASE_SECONDS from now."""
    until = await api_state(request).ops.tasks.heartbeat(caller, id, body.lease_token)
    return {"task_id": id, "lease_until": until.isoformat()}
