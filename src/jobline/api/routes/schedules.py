"""Schedules: list, add, show, runs, pause, resume, trigger, remove. A schedule is addressed by
name or id, as in the CLI.

A user sees and acts on their own schedules only (scoped in SQL; another user's answers as one
that does not exist), and may add schedules only for themselves and only of their own functions:
a SQL command or the built-in ``http`` function is the service's alone, as for jobs.

Names: the service's are global, as in SQL and the CLI. A user's are their own: the schedule a
user names ``nightly`` is ``<user>/nightly`` globally (schedule.owned_name), shown to that user
as ``nightly``, so another owner's names are neither revealed by a 409 nor taken.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ...job import BUILTIN_FUNCTIONS
from ...auth import Principal
from ...errors import Forbidden
from ...schedule import Schedule, name_seen_by
from ..models import (MAX_ID, ErrorOut, ScheduleIn, ScheduleListOut, ScheduleOut, ScheduleRemovedOut,
                      ScheduleRunListOut, ScheduleTriggeredOut)
from ..security import api_state, principal
from .tasks import AUTH_ERRORS

Ref = Annotated[str, Path(min_length=1, max_length=200,
                          description="The schedule's name (a user's: one of their own), or its id")]
REF_ERRORS = {**AUTH_ERRORS, 404: {"model": ErrorOut, "description": "No such schedule (or not the caller's)"}}

router = APIRouter(tags=["schedules"])


async def _get(request: Request, caller: Principal, ref: str) -> Schedule:
    return await api_state(request).store.schedule_get(ref, owner=caller.owner)


@router.get("/api/schedules", response_model=None, responses={200: {"model": ScheduleListOut}, **AUTH_ERRORS})
async def list_schedules(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """Every schedule (a user's own), with its next run and its latest run."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = await api_state(request).store.schedule_list(owner=caller.owner)
    return JSONResponse({"schedules": [schedule.summary(last, now, viewer=caller.owner) for schedule, last in rows]})


@router.post("/api/schedules", status_code=201, response_model=None, responses={
    201: {"model": ScheduleOut}, **AUTH_ERRORS,
    409: {"model": ErrorOut, "description": "The name is taken (a user's among their own schedules, the service's "
                                             "among global names); replace: true replaces it"}})
async def add_schedule(request: Request, body: ScheduleIn, caller: Principal = Depends(principal)) -> JSONResponse:
    """Add a schedule: each tick enqueues ``function`` with ``payload`` (or runs ``sql``)."""
    owner = body.owner
    if not caller.is_service:
        if owner is not None and owner != caller.owner:
            raise Forbidden("a user's schedule belongs to that user: leave out `owner` or give your own user id")
        owner = caller.owner
        if body.sql is not None or body.function in BUILTIN_FUNCTIONS:
            raise Forbidden("only the service may schedule SQL commands or the built-in http function")
    options = {k: v for k, v in body.model_dump(include={"queue", "priority", "max_attempts"}).items() if v is not None}
    schedule = await api_state(request).app.add_schedule_async(
        body.name, body.expression, body.function, body.payload, sql=body.sql, timezone=body.timezone, owner=owner,
        overlap=body.overlap, catch_up=body.catch_up, catch_up_max=body.catch_up_max, active=body.active,
        replace=body.replace, scope=caller.owner, **options)
    return JSONResponse(schedule.summary(viewer=caller.owner), status_code=201)


@router.get("/api/schedules/{ref}", response_model=None, responses={200: {"model": ScheduleOut}, **REF_ERRORS})
async def show_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """One schedule with its next run (its runs: ``/runs``)."""
    return JSONResponse((await _get(request, caller, ref)).summary(viewer=caller.owner))


@router.get("/api/schedules/{ref}/runs", response_model=None,
            responses={200: {"model": ScheduleRunListOut}, **REF_ERRORS})
async def schedule_runs(request: Request, ref: Ref, caller: Principal = Depends(principal),
                        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Keyset cursor")] = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> JSONResponse:
    """Its runs (ticks and triggers), newest first, with their jobs' state."""
    schedule = await _get(request, caller, ref)
    runs = await api_state(request).store.schedule_run_list(schedule.id, limit=limit + 1, before_id=before,
                                                            owner=caller.owner)  # one more: a next page?
    out = [run.to_dict() for run in runs[:limit]]
    return JSONResponse({"runs": out, "next_cursor": out[-1]["id"] if len(runs) > limit else None})


async def _set_active(request: Request, caller: Principal, ref: str, active: bool) -> JSONResponse:
    schedule = await _get(request, caller, ref)
    changed = await api_state(request).store.schedule_set_active(schedule.id, active, owner=caller.owner)
    return JSONResponse(changed.summary(viewer=caller.owner))


@router.post("/api/schedules/{ref}/pause", response_model=None, responses={200: {"model": ScheduleOut}, **REF_ERRORS})
async def pause_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """No ticks until it is resumed."""
    return await _set_active(request, caller, ref, False)


@router.post("/api/schedules/{ref}/resume", response_model=None,
             responses={200: {"model": ScheduleOut}, **REF_ERRORS})
async def resume_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """Ticks start again from now; those of the pause are not caught up."""
    return await _set_active(request, caller, ref, True)


@router.post("/api/schedules/{ref}/trigger", response_model=None,
             responses={200: {"model": ScheduleTriggeredOut}, **REF_ERRORS})
async def trigger_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """Run it once now, outside its ticks (recorded as a triggered run; works when paused)."""
    schedule = await _get(request, caller, ref)
    job_id = await api_state(request).store.schedule_trigger(schedule.id, owner=caller.owner)
    return JSONResponse({"id": schedule.id, "name": name_seen_by(caller.owner, schedule.name), "job_id": job_id})


@router.delete("/api/schedules/{ref}", response_model=None,
               responses={200: {"model": ScheduleRemovedOut}, **REF_ERRORS})
async def remove_schedule(request: Request, ref: Ref, caller: Principal = Depends(principal)) -> JSONResponse:
    """Remove it and its run history; its jobs stay."""
    schedule = await _get(request, caller, ref)
    await api_state(request).store.schedule_delete(schedule.id, owner=caller.owner)
    return JSONResponse({"id": schedule.id, "name": name_seen_by(caller.owner, schedule.name), "removed": True})
