"""Pipelines and their runs: list the recorded pipelines, start a run, list and read runs,
cancel and retry one. A user starts runs that are theirs and sees and steers only their own
runs (another's answers as one that does not exist); the service acts on every run. A pipeline's
name may hold a slash, so it is the rest of the path before ``/runs``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.convertors import register_url_convertor

from ...auth import Principal
from ..models import (MAX_ID, ErrorOut, PipelineCancelIn, PipelineListOut, PipelineRunListOut, PipelineRunOut,
                      PipelineStartIn)
from ..security import api_state, principal
from .queues import QueueName
from .tasks import AUTH_ERRORS

register_url_convertor("pipeline", QueueName())

RunId = Annotated[int, Path(ge=1, le=MAX_ID)]
RUN_ERRORS = {**AUTH_ERRORS, 404: {"model": ErrorOut, "description": "No such run, or not the caller's"}}
STEER_ERRORS = {**RUN_ERRORS, 409: {"model": ErrorOut, "description": "The run's status does not allow it"}}

router = APIRouter(tags=["pipelines"])


@router.get("/api/pipelines", response_model=None, responses={200: {"model": PipelineListOut}, **AUTH_ERRORS})
async def list_pipelines(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """Every recorded pipeline: its steps (a user sees the graph, not the steps' own payloads) and
    the caller's runs of it."""
    return JSONResponse({"pipelines": await api_state(request).ops.pipelines.list(caller)})


@router.post("/api/pipelines/{name:pipeline}/runs", response_model=None, status_code=201,
             responses={201: {"model": PipelineRunOut}, 404: {"model": ErrorOut, "description": "No such pipeline"},
                        **AUTH_ERRORS})
async def start_run(request: Request, name: str, caller: Principal = Depends(principal),
                    body: PipelineStartIn | None = Body(None)) -> JSONResponse:
    """Start a run: every step becomes a job in one transaction. A user's run is theirs."""
    payload, owner = (body.payload, body.owner) if body is not None else (None, None)
    run = await api_state(request).ops.pipelines.start(caller, name, payload, owner=owner)
    return JSONResponse(run, status_code=201)


@router.get("/api/pipeline-runs", response_model=None, responses={200: {"model": PipelineRunListOut},
                                                                  **AUTH_ERRORS})
async def list_runs(
        request: Request, caller: Principal = Depends(principal),
        pipeline: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        status: Annotated[str | None, Query(min_length=1, max_length=20,
                                            description="running, succeeded, failed or cancelled")] = None,
        owner: Annotated[str | None, Query(min_length=1, max_length=200,
                                           description="The service: any owner; a user: only their own")] = None,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Keyset cursor: runs with smaller ids "
                                                                         "(the previous page's next_cursor)")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> JSONResponse:
    """Runs newest first, filtered, one page at a time."""
    page = await api_state(request).ops.pipelines.runs(caller, pipeline=pipeline, status=status, owner=owner,
                                                       before_id=before, limit=limit)
    return JSONResponse({"runs": page.rows, "next_cursor": page.next_cursor})


@router.get("/api/pipeline-runs/{id}", response_model=None, responses={200: {"model": PipelineRunOut},
                                                                       **RUN_ERRORS})
async def show_run(request: Request, id: RunId, caller: Principal = Depends(principal)) -> JSONResponse:
    """A run with each step's status, result, attempts and times, and its history."""
    return JSONResponse(await api_state(request).ops.pipelines.get(caller, id))


@router.post("/api/pipeline-runs/{id}/cancel", response_model=None, responses={200: {"model": PipelineRunOut},
                                                                               **STEER_ERRORS})
async def cancel_run(request: Request, id: RunId, caller: Principal = Depends(principal),
                     body: PipelineCancelIn | None = Body(None)) -> JSONResponse:
    """Cancel the unfinished steps of a running run."""
    reason = body.reason if body is not None else None
    return JSONResponse(await api_state(request).ops.pipelines.cancel(caller, id, reason))


@router.post("/api/pipeline-runs/{id}/retry", response_model=None, responses={200: {"model": PipelineRunOut},
                                                                              **STEER_ERRORS})
async def retry_run(request: Request, id: RunId, caller: Principal = Depends(principal)) -> JSONResponse:
    """Run a failed or cancelled run again from its failed step(s), keeping earlier results."""
    return JSONResponse(await api_state(request).ops.pipelines.retry(caller, id))
