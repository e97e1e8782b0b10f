"""Queues: list them (a user: the queues of their own jobs, with their own counts), and pause or
resume one (the service only: a pause holds every owner's jobs). A queue's name may hold a
slash, so it is the rest of the path before ``/pause`` or ``/resume``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse
from starlette.convertors import Convertor, register_url_convertor

from ...auth import Principal
from ..models import ErrorOut, QueueListOut, QueueOut, QueuePauseIn
from ..security import api_state, principal
from .tasks import AUTH_ERRORS

STEER_ERRORS = {**AUTH_ERRORS, 403: {"model": ErrorOut, "description": "A user's credential cannot pause queues"}}

router = APIRouter(tags=["queues"])


class QueueName(Convertor):
    """The rest of the path, newlines included (Starlette's `path` stops at one), so that a
    malformed name is refused by the name rule with a 422 that says why, not a 404."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("queue", QueueName())


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


@router.get("/api/queues", response_model=None, responses={200: {"model": QueueListOut}, **AUTH_ERRORS})
async def list_queues(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """Each queue with the caller's jobs, and each paused queue: depth, last hour, paused or not."""
    return JSONResponse({"queues": [_out(row) for row in await api_state(request).ops.queues.list(caller)]})


@router.post("/api/queues/{name:queue}/pause", response_model=None,
             responses={200: {"model": QueueOut}, **STEER_ERRORS})
async def pause_queue(request: Request, name: str, caller: Principal = Depends(principal),
                      body: QueuePauseIn | None = Body(None)) -> JSONResponse:
    """Pause it on every worker: its jobs stay pending until it is resumed (schedules keep adding)."""
    reason = body.reason if body is not None else None
    return JSONResponse(_out(await api_state(request).ops.queues.pause(caller, name, reason)))


@router.post("/api/queues/{name:queue}/resume", response_model=None,
             responses={200: {"model": QueueOut}, **STEER_ERRORS})
async def resume_queue(request: Request, name: str, caller: Principal = Depends(principal)) -> JSONResponse:
    """Resume it: idle workers claim its due jobs at once."""
    return JSONResponse(_out(await api_state(request).ops.queues.resume(caller, name)))
