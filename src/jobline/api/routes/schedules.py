"""Schedules: list, add, show, runs, pause, resume, trigger, remove. A schedule is addressed by
name or id, as in the CLI.

Every route acts through the operations layer (operations/schedules.py) for the caller it
authenticated: a user sees and acts on their own schedules only (another user's answers as one
that does not exist), and may add schedules only for themselves and only of their own functions.
A user's names are their own: see operations/schedules.py.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ...auth import Principal
from ...operations.policy import public_schedule, scope
from ...schedule import name_seen_by
from ..models import (MAX_ID, ErrorOut, ScheduleIn, ScheduleListOut, ScheduleOut, ScheduleRemovedOut,
                      ScheduleRunListOut, ScheduleTriggeredOut)
from ..security import api_state, principal
from .tasks import AUTH_ERRORS

Ref = Annotated[str, Path(min_length=1, max_length=200,
                          description="The schedule's name (a user's: one of their own), or its id")]
REF_ERRORS = {**AUTH_ERRORS, 404: {"model": ErrorOut, "description": "No such schedule (or not the caller's)"}}

router = APIRouter(tags=["schedules"])


@router.get("/api/schedules", response_model=None, responses={200: {"model": ScheduleListOut}, **AUTH_ERRORS})
async def list_schedules(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """Every schedule (a user's own), with its next run and its latest run."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = await api_state(request).ops.schedules.list(caller)
    return JSONResponse({"schedules": [public_schedule(schedule, caller, last, now) for schedule, last in rows]})


@router.post("/api/schedules", status_code=201, response_model=None, responses={
    201: {"model": ScheduleOut}, **AUTH_ERRORS,
    409: {"model": ErrorOut, "description": "The name is taken (a user's among their own schedules, the service's "
                                             "among global names); replace: true replaces it"}})
async def add_schedule(request: Request, body: ScheduleIn, caller: Principal = Depends(principal)) -> JSONResponse:
    """Add a schedule: each tick enqueues ``function`` with ``payload`` (or runs ``sql``)."""
    options = {k: v for k, v in body.model_dump(include={"queue", "priority", "max_attempts", "pipeline",
                                                                "max_consecutive_failures"}).items() if v is not None}
    schedule = await api_state(request).ops.schedules.add(
        caller, body.name, body.expression, body.function, body.payload, sql=body.sql, timezone=body.timezone,
        owner=body.owner, overlap=body.overlap, catch_up=body.catch_up, catch_up_max=body.catch_up_max,
        active=body.active, replace=body.replace, **options)
    return JSONResponse(public_schedule(schedule, caller), status_code=201)


@router.get("/api/schedules/{ref}", response_model=None, responses={200: {"model": ScheduleOut}, **REF_ERRORS})
async def show_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """One schedule with its next run (its runs: ``/runs``)."""
    return JSONResponse(public_schedule(await api_state(request).ops.schedules.get(caller, ref), caller))


@router.get("/api/schedules/{ref}/runs", response_model=None,
            responses={200: {"model": ScheduleRunListOut}, **REF_ERRORS})
async def schedule_runs(request: Request, ref: Ref, caller: Principal = Depends(principal),
                        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Keyset cursor")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> JSONResponse:
    """Its runs (ticks and triggers), newest first, with their jobs' state."""
    page = await api_state(request).ops.schedules.runs(caller, ref, limit=limit, before_id=before)
    return JSONResponse({"runs": [run.to_dict() for run in page.rows], "next_cursor": page.next_cursor})


@router.post("/api/schedules/{ref}/pause", response_model=None, responses={200: {"model": ScheduleOut}, **REF_ERRORS})
async def pause_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """No ticks until it is resumed."""
    return JSONResponse(public_schedule(await api_state(request).ops.schedules.pause(caller, ref), caller))


@router.post("/api/schedules/{ref}/resume", response_model=None,
             responses={200: {"model": ScheduleOut}, **REF_ERRORS})
async def resume_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """Ticks start again from now; those of the pause are not caught up."""
    return JSONResponse(public_schedule(await api_state(request).ops.schedules.resume(caller, ref), caller))


@router.post("/api/schedules/{ref}/trigger", response_model=None,
             responses={200: {"model": ScheduleTriggeredOut}, **REF_ERRORS})
async def trigger_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """Run it once now, outside its ticks (recorded as a triggered run; works when paused)."""
    schedule, job_id = await api_state(request).ops.schedules.trigger(caller, ref)
    return JSONResponse({"id": schedule.id, "name": name_seen_by(scope(caller), schedule.name), "job_id": job_id})


@router.delete("/api/schedules/{ref}", response_model=None,
               responses={200: {"model": ScheduleRemovedOut}, **REF_ERRORS})
async def remove_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """Remove it and its run history; its jobs stay."""
    schedule = await api_state(request).ops.schedules.remove(caller, ref)
    return JSONResponse({"id": schedule.id, "name": name_seen_by(scope(caller), schedule.name), "removed": True})
