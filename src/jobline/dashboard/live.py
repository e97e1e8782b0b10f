"""Live updates: GET /events is a server-sent event stream that sends a page's live parts again
whenever they change, for the signed-in viewer.

One Hub per server process follows ``ops.activity.changes()`` (the NOTIFY jobline sends, and a
cheap marker for what sends none, debounced to one wake-up a second) while anyone watches. On
each wake-up, every stream renders its viewer's page again through the same route as a page
view (so with the same session, the same owner scoping and the same escaping) and sends the
live parts only when their digest changed: a viewer hears about their own view, never that
something else moved. A stream ends after STREAM_SECONDS (the script reconnects at once), so a
server shutting down never waits long for one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import Match

from . import web

log = logging.getLogger(__name__)

STREAM_SECONDS = 25.0
KEEPALIVE_SECONDS = 10.0


class Hub:
    """Wakes every open stream of this process when something may have changed."""

    def __init__(self, ops):
        self.ops = ops
        self.waiting: set[asyncio.Event] = set()
        self.task: asyncio.Task | None = None

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self.waiting.add(event)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._follow())
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self.waiting.discard(event)

    async def _follow(self) -> None:
        changes = self.ops.activity.changes()
        try:
            async for _ in changes:
                if not self.waiting:
                    return  # nobody watches: stop listening (the next stream starts it again)
                for event in list(self.waiting):
                    event.set()
        except Exception:  # noqa: BLE001  (the top of a service loop: log and let the next stream restart it)
            log.warning("dashboard.live_failed", exc_info=True)
        finally:
            await changes.aclose()


def hub_of(request: Request) -> Hub:
    hub = getattr(request.app.state, "dashboard_hub", None)
    if hub is None:
        hub = request.app.state.dashboard_hub = Hub(web.ops(request))
    return hub


async def render_live(request: Request, path: str) -> dict[str, str] | None:
    """The live parts of page ``path`` as this request's viewer sees it now; None when that is
    not a page of the dashboard or the viewer is signed out."""
    if not path.startswith("/") or path.startswith("//") or path.startswith("/events"):
        return None
    route_path, _, query = path.partition("?")
    scope: dict[str, Any] = {**request.scope, "method": "GET", "path": route_path, "raw_path": route_path.encode(),
                             "query_string": query.encode(), "route": None}
    from . import SCREENS  # the screens' own routes (imported here: the package imports this module)

    for route in (route for screen in SCREENS for route in screen.router.routes):
        if "GET" not in getattr(route, "methods", ()):
            continue
        match, child = route.matches(scope)
        if match is Match.FULL:
            page = Request({**scope, **child})
            response: Response = await route.endpoint(page, **child.get("path_params", {}))
            if response.status_code != 200:
                return None
            return web.live_regions(response.body.decode())
    return None


async def _disconnect(request: Request) -> None:
    """Returns when the client closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def events(request: Request) -> Response:
    """GET /events?path=PAGE&digest=D: the stream of PAGE's live parts for this viewer."""
    if await web.current_session(request) is None:
        return Response(status_code=401, headers=web.PAGE_HEADERS)
    path = request.query_params.get("path", "/")
    known = request.query_params.get("digest", "")
    first = await render_live(request, path)
    if first is None:
        return Response(status_code=404, headers=web.PAGE_HEADERS)
    hub = hub_of(request)

    async def stream():
        nonlocal known
        event = hub.subscribe()
        loop = asyncio.get_running_loop()
        ends = loop.time() + STREAM_SECONDS
        regions = first
        gone = asyncio.ensure_future(_disconnect(request))
        waits: set[asyncio.Future] = set()
        try:
            yield "retry: 1000\n\n"
            while True:
                current = web.digest(regions)
                if current != known:
                    known = current
                    yield f"event: update\ndata: {json.dumps({'regions': regions, 'digest': current})}\n\n"
                left = ends - loop.time()
                if left <= 0:
                    yield "event: bye\ndata: {}\n\n"
                    return
                woken = asyncio.ensure_future(event.wait())
                waits.add(woken)
                await asyncio.wait({woken, gone}, timeout=min(left, KEEPALIVE_SECONDS),
                                   return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                waits.discard(woken)
                if gone.done():
                    return  # the browser went away: end now, not at the next write
                if not event.is_set():
                    yield ": keepalive\n\n"
                    continue
                event.clear()
                regions = await render_live(request, path)
                if regions is None:
                    yield "event: signed-out\ndata: {}\n\n"
                    return
        finally:
            for waiting in (gone, *waits):
                waiting.cancel()
            hub.unsubscribe(event)

    headers = {**web.PAGE_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
