"""Guard: the ASGI layer around every request.

It refuses bodies over MAX_BODY_BYTES (by Content-Length before reading, and by counting what
is actually streamed), refuses request bodies that are not JSON (but for the dashboard's
urlencoded forms, outside /api/ and /functions/), times and counts every request
for /metrics by route template, and turns any exception nothing else handled into a 500 with the
usual error body; the traceback goes only to the server's log.
"""

from __future__ import annotations

import logging
import time
from email.message import Message

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import SERVER_MESSAGES, ApiError, error_response
from .metrics import Metrics

log = logging.getLogger(__name__)

# A 1 MiB payload plus room for the rest of an enqueue request.
MAX_BODY_BYTES = 1024 * 1024 + 64 * 1024
TOO_LARGE = f"the request body is larger than {MAX_BODY_BYTES} bytes (a payload may be at most 1 MiB)"


class Guard:
    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        started = False

        async def send_and_note(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        received = 0

        async def receive_limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise ApiError(413, "payload_too_large", TOO_LARGE)
            return message

        try:
            refusal = _refuse_body(scope)
            if refusal is not None:
                await refusal(scope, receive, send_and_note)
                return
            await self.app(scope, receive_limited, send_and_note)
        except Exception:
            log.error("request.crashed", extra={"method": scope["method"], "path": scope["path"]}, exc_info=True)
            if started:
                raise  # the answer is half sent: let the server drop the connection
            await error_response(500, "internal", SERVER_MESSAGES[500])(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - began)


def _refuse_body(scope: Scope):
    """An error response for a body refused from its headers alone, else None."""
    length = content_type = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            length = value
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return error_response(413, "payload_too_large", TOO_LARGE)
    has_body = (length is not None and length != b"0") or (length is None and _chunked(scope))
    if has_body and content_type is not None and not _is_json(content_type) and not _dashboard_form(scope, content_type):
        return error_response(415, "unsupported_media_type", "the request body must be JSON: send "
                                                             "`Content-Type: application/json`")
    return None


def _dashboard_form(scope: Scope, content_type: str) -> bool:
    """The dashboard's HTML forms post urlencoded bodies; the API's routes take JSON only."""
    path = scope.get("path", "")
    return (content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"
            and not path.startswith(("/api/", "/functions/")))


def _chunked(scope: Scope) -> bool:
    return any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))


def _is_json(content_type: str) -> bool:
    message = Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
