"""The built-in ``http`` function and named HTTP functions: durable outbound calls.

A job's payload describes one request; the worker sends it with one shared ``httpx.AsyncClient``
and records what came back as the job's result. Timeouts, connection errors, 429 and 5xx are
retried with the job's backoff (429 after its ``Retry-After``); other 4xx fail at once. Every
attempt of a job carries the same ``Idempotency-Key``, so a receiver can drop duplicates.

Destinations go through the egress policy (``egress.py``) where the connection is made: the
network backend in ``http_sender.py`` resolves the host itself, checks every address, and
connects to a checked one, for the first request and for each redirect hop.

This module is what registration and validation need: the call, its checks and the handlers.
Sending (httpx and everything under it) is ``http_sender.py``, imported with the first call,
so a process that makes none never loads httpx, httpcore, anyio or h11 (issue 12).

Secrets: a reference is resolved only in what the operator wrote, just before sending, in
memory only: the URL, query parameters, headers and body of an ``http`` job (which only the
operator's code, SQL and service key may create), and the URL and headers a named HTTP function
declares. The payload of a named function is data, perhaps a user's: it is sent exactly as
given, never searched for references; so are the params and body of an ``http`` job whose
payload says ``"literal_body": true`` (a notification's delivery, whose event holds text users
wrote). ``{{secret:NAME}}`` is the operator's secret, ``{{owner_secret:NAME}}`` the job owner's. The job row keeps the placeholders. What we write
ourselves (the request line in errors, egress refusals, ``url`` and ``final_url`` without redirects) is
built from the payload as written, never from resolved text; what the other side or a library
wrote (the response, a redirect target, an exception's message) is scrubbed of every form of
the plaintexts (``vault.Scrubber``) before it is cut to size, and left out when a value still
shows through. httpx's own logging of our requests (which shows resolved URLs) is silenced,
and jobline logs only ids, statuses and sizes.

>>> app.enqueue("http", {"url": "https://api.example.com/hooks", "body": {"event": "signup"},
...                      "headers": {"Authorization": "Bearer {{secret:api_token}}"}})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import Fail, InvalidInput, Retry
from ..runtime.context import JobContext
from ..settings import Settings

if TYPE_CHECKING:
    from .http_sender import Sender

NAME = "http"
MAX_ATTEMPTS = 5                  # jobline.http_post / http_get use the same (migration 0003)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_TIMEOUT_MS = 5000         # pg_net's default
MAX_TIMEOUT_MS = 600_000
PAYLOAD_FIELDS = frozenset({"url", "method", "headers", "params", "body", "timeout_ms", "idempotency_key",
                            "literal_body", "keep_response"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE = re.compile(r"[\x00\r\n]")
_URL_START = re.compile(r"(?i)https?://|\{\{secret:")


class HttpCallFailed(Retry):
    """A call that may succeed when retried: timeout, connection error, 429 or 5xx. Its
    ``result`` is the response, or why none came (see ``http_sender._no_response``)."""


# -- what to send --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Call:
    """One validated request, placeholders not yet resolved."""

    url: str
    method: str
    headers: dict[str, str]
    params: dict[str, Any]
    body: Any
    has_body: bool
    timeout_ms: int
    idempotency_key: str | None = None
    # True for a named function: params and body are its job's payload, data that may come from
    # a user, so they are sent as given and never searched for references. Only the parts the
    # operator wrote (url and headers here; everything in an `http` job) are resolved.
    literal_data: bool = False
    # False for a user's notification delivery (0026): the result and error keep the status and
    # timing only, so the job's owner never reads what a host behind the operator's egress policy
    # answered.
    keep_response: bool = True

    @property
    def template(self) -> list[Any]:
        """The parts whose ``{{secret:...}}`` references are resolved."""
        return [self.url, self.headers] if self.literal_data else [self.url, self.headers, self.params, self.body]


def parse_call(payload: Any) -> Call:
    """Validate an ``http`` job's payload; Fail (no retry) names the field that is wrong.

    >>> parse_call({"url": "https://example.com", "body": {"a": 1}}).method
    'POST'
    """
    if not isinstance(payload, Mapping):
        raise Fail("the http function needs a payload object like {\"url\": \"https://...\"}")
    unknown = sorted(set(payload) - PAYLOAD_FIELDS)
    if unknown:
        raise Fail(f"http payload: unknown field(s) {', '.join(unknown)}; "
                   f"known: {', '.join(sorted(PAYLOAD_FIELDS))} (timeout_ms is in milliseconds)")
    has_body = "body" in payload
    method = payload.get("method", "POST" if has_body else "GET")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise Fail(f"http payload: method must be one of {', '.join(METHODS)}, got {method!r}")
    timeout_ms = payload.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
        raise Fail(f"http payload: timeout_ms must be a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}, "
                   f"got {timeout_ms!r}")
    key = payload.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 200 or _BAD_HEADER_VALUE.search(key)):
        raise Fail("http payload: idempotency_key must be a string of 1 to 200 characters without line breaks")
    literal = payload.get("literal_body", False)
    if not isinstance(literal, bool):
        raise Fail(f"http payload: literal_body must be true or false, got {_clip(literal)}")
    keep_response = payload.get("keep_response", True)
    if not isinstance(keep_response, bool):
        raise Fail(f"http payload: keep_response must be true or false, got {_clip(keep_response)}")
    url = payload.get("url")
    if not isinstance(url, str) or not url.strip() or len(url) > 8192:
        # The scheme and host are the egress policy's to judge (DestinationBlocked), once any
        # {{secret:...}} in the URL is filled in.
        raise Fail(f"http payload: url must be an http:// or https:// URL of at most 8192 characters, got {_clip(url)}")
    return Call(url=url.strip(), method=method.upper(),
                headers=check_headers(payload.get("headers"), "http payload: headers"),
                params=_check_params(payload.get("params")), body=payload.get("body"), has_body=has_body,
                timeout_ms=timeout_ms, idempotency_key=key, literal_data=literal, keep_response=keep_response)


def check_url_field(url: Any, what: str) -> str:
    if not isinstance(url, str) or not _URL_START.match(url.strip()) or len(url) > 8192:
        raise Fail(f"{what} must be an http:// or https:// URL (or start with a {{{{secret:NAME}}}} reference), "
                   f"got {_clip(url)}")
    return url.strip()


def check_headers(headers: Any, what: str) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise Fail(f"{what} must be an object of header names to string values, got {type(headers).__name__}")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise Fail(f"{what}: {_clip(name)} is not a valid header name")
        if not isinstance(value, str):
            raise Fail(f"{what}: the value of {name} must be a string, got {type(value).__name__}")
        if _BAD_HEADER_VALUE.search(value):
            raise Fail(f"{what}: the value of {name} contains a line break or NUL")
    return dict(headers)


def _check_params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise Fail(f"http payload: params must be an object of query parameters, got {type(params).__name__}")
    checked: dict[str, Any] = {}
    for name, value in params.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise Fail(f"http payload: params.{name} must be a string, number or boolean (or a list of them)")
        checked[name] = [_param_text(v) for v in values] if isinstance(value, list) else _param_text(value)
    return checked


def _param_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# -- the caller ---------------------------------------------------------------------------------


class HttpCaller:
    """The ``http`` function and named HTTP functions: checks what to send (at registration and
    for each job) and hands it to an ``http_sender.Sender``, created with the first call.

    ``settings`` is read when the client is created and at each call (a callable, because the
    CLI gives a user's App its settings after the App was built)."""

    def __init__(self, settings: Callable[[], Settings]):
        self._settings = settings
        self._sender: Sender | None = None

    async def aclose(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            await sender.aclose()

    # -- handlers ---------------------------------------------------------------------------------

    async def run(self, payload: dict, ctx: JobContext) -> dict:
        """The ``http`` function: send the request the payload describes."""
        return await self.send(parse_call(payload), ctx)

    def function(self, *, url: str, method: str = "POST", headers: Mapping[str, str] | None = None,
                 timeout: float = 30.0) -> Callable[[dict, JobContext], Awaitable[dict]]:
        """A handler that sends its job's payload to ``url`` (as the JSON body; as query
        parameters for GET and HEAD). Validates the options now (InvalidInput)."""
        try:
            url = check_url_field(url, "url")
            fixed_headers = check_headers(headers, "headers")
        except Fail as exc:
            raise InvalidInput(exc.reason) from None
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise InvalidInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_TIMEOUT_MS / 1000:
            raise InvalidInput(f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_MS // 1000}, "
                               f"got {timeout!r}")
        method = method.upper()
        timeout_ms = max(1, round(timeout * 1000))

        async def handler(payload: dict, ctx: JobContext) -> dict:
            in_query = method in ("GET", "HEAD")
            call = Call(url=url, method=method, headers=fixed_headers,
                        params=_check_params(payload) if in_query else {}, body=payload, has_body=not in_query,
                        timeout_ms=timeout_ms, literal_data=True)
            return await self.send(call, ctx)

        return handler

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, call: Call, ctx: JobContext) -> dict:
        if self._sender is None:
            # httpx and what it pulls in cost a process about 9 MB: only one that sends pays it.
            from .http_sender import Sender

            self._sender = Sender(self._settings)
        return await self._sender.send(call, ctx)


def _clip(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."

