"""The Notifications screen: events newest first (a user's own; the service's every one), with a
filter by kind, and the caller's webhook subscriptions. Read-only: subscriptions are managed
through the API, the CLI or Python (docs/concepts/notifications.md)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..operations.notifications import EVENT_KINDS
from . import web
from .views import PAGE_SIZE, _page

router = APIRouter(include_in_schema=False)


@router.get("/notifications")
async def notifications(request: Request) -> Response:
    async def build(session):
        ops = web.ops(request)
        kind = request.query_params.get("kind") or None
        if kind not in EVENT_KINDS:
            kind = None  # an unknown filter shows everything rather than an error page
        before = request.query_params.get("before")
        page = await ops.notifications.list(
            session.caller, kind=kind, limit=PAGE_SIZE,
            before_id=web.id_in(before))
        return "notifications.html", {"rows": page.rows, "next_cursor": page.next_cursor, "kind": kind,
                                      "kinds": EVENT_KINDS, "nav": "notifications",
                                      "subscriptions": await ops.notifications.subscriptions(session.caller)}
    return await _page(request, build)
