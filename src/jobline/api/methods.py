"""MethodCheck: a request whose path the API serves, but not with its method, is 405 before routing.

Routing alone gets two things wrong, because each method of a path is its own route:

- The 405's ``Allow`` names only the first route that matched the path (``PUT /api/jobs`` said
  ``Allow: GET``, not ``GET, POST``). Here it names every method of the path.
- A template takes a literal path for a method the literal path does not have: ``GET
  /api/jobs/run`` went to ``GET /api/jobs/{id}`` and was a 422 (id "run" is not a number). Here a
  path that some route spells literally is answered only by the routes that spell it, so that
  is a 405 with ``Allow: POST``. Anything else a template matches is left to it: ``GET
  /api/jobs/abc`` is still a 422 naming the path parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response


class MethodCheck:
    def __init__(self, app: ASGIApp, routes: Iterable[Any]):
        self.app = app
        # (path regex, methods, literal, route) of every route with methods (APIRoute, Route).
        self.routes: list[tuple[re.Pattern, frozenset[str], bool, Any]] = [
            (route.path_regex, frozenset(route.methods), not route.param_convertors, route)
            for route in routes if getattr(route, "methods", None) and hasattr(route, "path_regex")]

    def allowed(self, path: str) -> tuple[frozenset[str], Any]:
        """The methods ``path`` is served with (none: no route has it), and one of its routes."""
        matching = [(methods, literal, route) for regex, methods, literal, route in self.routes if regex.match(path)]
        if any(literal for _, literal, _ in matching):
            matching = [m for m in matching if m[1]]
        methods = frozenset().union(*(m[0] for m in matching))
        return methods, matching[0][2] if matching else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            methods, route = self.allowed(get_route_path(scope))
            if methods and scope["method"] not in methods:
                scope["route"] = route  # /metrics counts it under the path's template
                allow = ", ".join(sorted(methods))
                response = error_response(405, "method_not_allowed",
                                          f"{scope['method']} is not allowed here; allowed: {allow}", {"Allow": allow})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
