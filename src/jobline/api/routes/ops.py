"""Operations: /api/stats (owner-scoped), /metrics (service only), /healthz and /readyz (no auth)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from ...auth import Principal
from ...errors import JoblineError
from ..metrics import CONTENT_TYPE
from ..models import StatsOut, StatusOut
from ..security import api_state, principal, service
from .tasks import AUTH_ERRORS

log = logging.getLogger(__name__)

READY_TIMEOUT = 5.0

router = APIRouter(tags=["ops"])


@router.get("/api/stats", response_model=None, responses={200: {"model": StatsOut}, **AUTH_ERRORS})
async def stats(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """Unarchived jobs by status and by function; jobs that succeeded and failed in the last
    minute, 5 minutes and hour, with the failure rate; the age of the oldest due pending job.
    A user sees their own jobs, the service every job."""
    return JSONResponse(await api_state(request).ops.jobs.stats(caller))


@router.get("/metrics", response_class=Response, responses={
    200: {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}},
    **AUTH_ERRORS})
async def metrics(request: Request, _: Principal = Depends(service)) -> Response:
    """Prometheus metrics: live jobs by function and status, the oldest due pending job's age, recent
    outcomes, HTTP requests and latency by route template and status, refused credentials.
    Needs a service credential."""
    api = api_state(request)
    return Response(await api.metrics.render(api.ops), media_type=CONTENT_TYPE)


@router.get("/healthz", response_model=StatusOut, response_model_exclude_none=True)
@router.head("/healthz", include_in_schema=False)
async def healthz() -> dict:
    """The process is up (no database check: see /readyz)."""
    return {"status": "ok"}


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", response_model=None, responses={
    200: {"model": StatusOut}, 503: {"model": StatusOut, "description": "Not ready, with the reason"}})
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and every migration is applied (503 with the reason
    otherwise; the details go to the server's log)."""
    try:
        pending = await asyncio.wait_for(api_state(request).ops.pending_migrations(), READY_TIMEOUT)
    except TimeoutError:
        return _not_ready(f"the database did not answer within {READY_TIMEOUT:g} s")
    except JoblineError as exc:
        log.warning("readiness.failed", extra={"error": str(exc)})
        return _not_ready("the database is unreachable or has no jobline schema (run `jobline db migrate`)")
    if pending:
        return _not_ready(f"migrations pending: {', '.join(pending)} (run `jobline db migrate`)")
    return JSONResponse({"status": "ok"})


def _not_ready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
