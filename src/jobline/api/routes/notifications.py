"""Notifications: the record of events (a user reads their own, the service every one) and the
webhook subscriptions that receive them (a user manages their own, the service every one; the
service's without an owner are the operator's, which receive every event). See
operations/notifications.py for the rules, docs/concepts/notifications.md for the events."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from ...auth import Principal
from ..models import (MAX_ID, ErrorOut, EventKind, NotificationListOut, SubscriptionIn, SubscriptionListOut,
                      SubscriptionOut)
from ..security import api_state, principal
from .tasks import AUTH_ERRORS

router = APIRouter(tags=["notifications"])


@router.get("/api/notifications", response_model=None,
            responses={200: {"model": NotificationListOut}, **AUTH_ERRORS})
async def list_notifications(
        request: Request, caller: Principal = Depends(principal),
        kind: Annotated[EventKind | None, Query(description="Only events of this kind")] = None,
        since: Annotated[dt.datetime | None, Query(description="ISO 8601, inclusive")] = None,
        owner: Annotated[str | None, Query(min_length=1, max_length=200,
                                           description="The service: one user's; a user: only their own")] = None,
        before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="Keyset cursor: the previous page's "
                                                                         "next_cursor")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> JSONResponse:
    """Events newest first, one page at a time."""
    page = await api_state(request).ops.notifications.list(caller, kind=kind, since=since, owner=owner,
                                                           before_id=before, limit=limit)
    return JSONResponse({"notifications": page.rows, "next_cursor": page.next_cursor})


@router.get("/api/notifications/subscriptions", response_model=None,
            responses={200: {"model": SubscriptionListOut}, **AUTH_ERRORS})
async def list_subscriptions(request: Request, caller: Principal = Depends(principal)) -> JSONResponse:
    """The caller's webhook subscriptions (the service: everyone's)."""
    return JSONResponse({"subscriptions": await api_state(request).ops.notifications.subscriptions(caller)})


@router.post("/api/notifications/subscriptions", status_code=201, response_model=None,
             responses={201: {"model": SubscriptionOut}, **AUTH_ERRORS})
async def subscribe(request: Request, body: SubscriptionIn, caller: Principal = Depends(principal)) -> JSONResponse:
    """Add a webhook subscription: each event is POSTed to ``url`` by a durable http job, with an
    Idempotency-Key header that is the same on every attempt."""
    row = await api_state(request).ops.notifications.subscribe(caller, body.url, events=body.events,
                                                               headers=body.headers, owner=body.owner)
    return JSONResponse(row, status_code=201)


@router.delete("/api/notifications/subscriptions/{id}", response_model=None, responses={
    200: {"model": SubscriptionOut}, **AUTH_ERRORS,
    404: {"model": ErrorOut, "description": "No such subscription (or not the caller's)"}})
async def unsubscribe(request: Request, id: Annotated[int, Path(ge=1, le=MAX_ID)],
                      caller: Principal = Depends(principal)) -> JSONResponse:
    """Remove a subscription; deliveries already queued still run."""
    return JSONResponse(await api_state(request).ops.notifications.unsubscribe(caller, id))
