"""Jobs: enqueue, list, show, steer, and run the due ones now (seed 001's worker endpoint).

Every route acts through the operations layer (operations/jobs.py) for the caller it
authenticated, and policy.py decides what that caller may do: a user sees and acts on their own
jobs only (another user's job answers exactly as one that does not exist), the service on every
job.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ...auth import Principal
from ...job import parse_run_at
from ...operations.policy import public_attempt, public_job
from ..models import (MAX_ID, EnqueueIn, ErrorOut, JobDetailOut, JobListOut, JobOut, RunIn, RunOut, Status)
from ..security import api_state, principal, runner
from .tasks import AUTH_ERRORS

JobIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id")]
STEER_ERRORS = {**AUTH_ERRORS, 404: {"model": ErrorOut, "description": "No such job (or not the caller's)"},
                409: {"model": ErrorOut, "description": "The job's state does not allow this"}}

router = APIRouter(tags=["jobs"])


@router.post("/api/jobs", status_code=201, response_model=None, responses={
    201: {"model": JobOut, "description": "The job (with a unique_key: the live job holding it, if any)"},
    **AUTH_ERRORS})
async def enqueue(request: Request, body: EnqueueIn, caller: Principal = Depends(principal)) -> JSONResponse:
    """Enqueue a job. A user's job is always theirs (naming another owner is 403) and may depend
    only on their own jobs; only the service may enqueue the built-in ``sql`` and ``http``
    functions, or set any owner."""
    job = await api_state(request).ops.jobs.enqueue(
        caller, body.function, body.payload, run_at=parse_run_at(body.run_at) if body.run_at is not None else None,
        delay=body.delay, queue=body.queue, priority=body.priority, owner=body.owner, max_attempts=body.max_attempts,
        depends_on=body.depends_on, unique_key=body.unique_key,
        concurrency_key=body.concurrency_key)
    return JSONResponse(public_job(job), status_code=201)


@router.get("/api/jobs", response_model=None, responses={200: {"model": JobListOut}, **AUTH_ERRORS})
async def list_jobs(
        request: Request, caller: Principal = Depends(principal),
        status: Annotated[list[Status] | None, Query(description="Only these states (repeatable)")] = None,
        function: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        queue: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
        owner: Annotated[str | None, Query(min_length=1, max_length=200,
                                           description="The service: any owner; a user: only their own")] = None,
        created_after: Annotated[dt.datetime | None, Query(description="ISO 8601, inclusive")] = None,
        created_before: Annotated[dt.datetime | None, Query(description="ISO 8601, exclusive")] = None,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Keyset cursor: jobs with smaller ids "
                                                                         "(the previous page's next_cursor)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        archived: Annotated[bool, Query(description="Include archived jobs")] = False) -> JSONResponse:
    """Jobs newest first, filtered, one page at a time."""
    page = await api_state(request).ops.jobs.list(
        caller, statuses=status, function=function, queue=queue, owner=owner, created_after=created_after,
        created_before=created_before, before_id=before, include_archived=archived, limit=limit)
    return JSONResponse({"jobs": [public_job(job) for job, _served in page.rows], "next_cursor": page.next_cursor})


@router.get("/api/jobs/{id}", response_model=None, responses={
    200: {"model": JobDetailOut, "description": "The job, with `attempts` listing its finished attempts"},
    **STEER_ERRORS})
async def show_job(request: Request, id: JobIdPath, caller: Principal = Depends(principal)) -> JSONResponse:
    """A job with its finished attempts (``attempts`` is their list here, not a count)."""
    jobs = api_state(request).ops.jobs
    out = public_job(await jobs.get(caller, id))
    out["attempts"] = [public_attempt(a, caller) for a in await jobs.attempts(caller, id)]
    return JSONResponse(out)


async def _steer(request: Request, caller: Principal, action: str, job_id: int) -> JSONResponse:
    jobs = api_state(request).ops.jobs
    method = {"retry": jobs.retry, "cancel": jobs.cancel, "run-now": jobs.run_now, "archive": jobs.archive}[action]
    return JSONResponse(public_job(await method(caller, job_id)))


@router.post("/api/jobs/{id}/retry", response_model=None, responses={200: {"model": JobOut}, **STEER_ERRORS})
async def retry_job(request: Request, id: JobIdPath, caller: Principal = Depends(principal)) -> JSONResponse:
    """Run a failed or cancelled job again (its attempts start over)."""
    return await _steer(request, caller, "retry", id)


@router.post("/api/jobs/{id}/cancel", response_model=None, responses={200: {"model": JobOut}, **STEER_ERRORS})
async def cancel_job(request: Request, id: JobIdPath, caller: Principal = Depends(principal)) -> JSONResponse:
    """Cancel a waiting, pending or running job (and the jobs that depend on it)."""
    return await _steer(request, caller, "cancel", id)


@router.post("/api/jobs/{id}/run-now", response_model=None, responses={200: {"model": JobOut}, **STEER_ERRORS})
async def run_job_now(request: Request, id: JobIdPath, caller: Principal = Depends(principal)) -> JSONResponse:
    """Make a pending job due now."""
    return await _steer(request, caller, "run-now", id)


@router.post("/api/jobs/{id}/archive", response_model=None, responses={200: {"model": JobOut}, **STEER_ERRORS})
async def archive_job(request: Request, id: JobIdPath, caller: Principal = Depends(principal)) -> JSONResponse:
    """Hide a finished job from listings and counts (it is still pruned on schedule)."""
    return await _steer(request, caller, "archive", id)


@router.post("/api/jobs/run", response_model=None, responses={
    200: {"model": RunOut, "description": "What ran"},
    401: AUTH_ERRORS[401], 403: {"model": ErrorOut, "description": "A user's credential"}, 429: AUTH_ERRORS[429]})
async def run_due_jobs(request: Request, _: Principal = Depends(runner),
                       body: RunIn | None = Body(None)) -> JSONResponse:
    """Run up to ``limit`` due jobs of the served App's functions now, in this process, and say
    what happened (for an external cron: seed 001). Needs the runner secret
    (JOBLINE_RUNNER_SECRET) or the service key."""
    summary = await api_state(request).app.process_async(body.limit if body else 100)
    return JSONResponse({"status": "ok", **summary.to_dict()})
