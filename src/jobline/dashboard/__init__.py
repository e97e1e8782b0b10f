"""The dashboard at / of `jobline serve`: server-rendered pages (Jinja2 templates, plain HTML
forms) over the operations layer, with one small script of ours for confirm dialogs and live
updates. Mounted into the API's FastAPI app by :func:`install`.

>>> install(server)   # api/app.py does this  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response

from . import limits, live, notifications, pipelines, views

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
SCREENS = (views, limits, notifications, pipelines)  # each module's `router` serves its pages (and live.py's)


def install(server: FastAPI) -> None:
    """Add the dashboard's routes to ``server`` (whose ``state.jobline`` has ``ops``, ``settings``,
    ``limiter`` and ``metrics``, as api.app.Api does)."""
    for screen in SCREENS:
        server.include_router(screen.router)
    server.add_api_route("/events", live.events, methods=["GET"], include_in_schema=False)
    server.add_api_route("/static/{name}", static, methods=["GET"], include_in_schema=False)


async def static(request: Request, name: str) -> Response:
    """The stylesheet and the script, from this package (so they ship in the wheel)."""
    suffix = name[name.rfind("."):] if "." in name else ""
    folder = resources.files(__package__).joinpath("static")
    if suffix not in STATIC_TYPES or "/" in name or name.startswith(".") or not folder.joinpath(name).is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(folder.joinpath(name).read_bytes(), media_type=STATIC_TYPES[suffix],
                    headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"})
