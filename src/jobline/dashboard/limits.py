"""The dashboard's flow-control screen (/limits): the limits the claim holds (a user sees
those on their own jobs); the service sets and removes them with plain forms (the same operations as `jobline limits` and
/api/limits). Its own module, so the screen's routes live apart from views.py's."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..errors import InvalidInput
from ..limit import describe, parse_rate
from . import web
from .views import Refused, _action, _page
from .web import first

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


@router.get("/limits")
async def limits(request: Request) -> Response:
    async def build(session):
        rows = await web.ops(request).limits.list(session.caller)
        for row in rows:
            row["holds"] = describe(row)
        steer = session.caller.is_service and not web.read_only(request)  # limits hold every owner's jobs
        return "limits.html", {"rows": rows, "nav": "limits", "steer": steer, "done": request.query_params.get("done")}
    return await _page(request, build)


def _whole_number(text: str | None, what: str) -> int | None:
    if text is None or not text.strip():
        return None
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise InvalidInput(f"{what} must be a whole number, got {text!r}")
    return int(text)


@router.post("/limits/{action}")
async def limit_action(request: Request, action: str) -> Response:
    """Set (add or replace) or remove the limit described by the form."""
    async def act(session, fields):
        ops = web.ops(request).limits
        scope, target = first(fields, "scope") or "", first(fields, "target") or ""
        per_key = first(fields, "per_key") in ("on", "true", "1")
        if action == "set":
            rate = (first(fields, "rate") or "").strip()
            rate_count, rate_seconds = parse_rate(rate) if rate else (None, None)
            await ops.set(session.caller, scope, target, per_key=per_key,
                          concurrency=_whole_number(first(fields, "concurrency"), "concurrency"),
                          rate_count=rate_count, rate_seconds=rate_seconds)
        elif action == "remove":
            await ops.remove(session.caller, scope, target, per_key=per_key)
        else:
            raise Refused(404, "Not found", "No such action.")
        log.info("dashboard.limit_changed", extra={"scope": scope, "target": target, "action": action})
        return web.redirect(f"/limits?done={action}")
    return await _action(request, act)
