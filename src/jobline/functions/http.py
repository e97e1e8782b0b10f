"""The built-in ``http`` function and named HTTP functions: durable outbound calls.

A job's payload describes one request; the worker sends it with one shared ``httpx.AsyncClient``
and records what came back as the job's result. Timeouts, connection errors, 429 and 5xx are
retried with the job's backoff (429 after its ``Retry-After``); other 4xx fail at once. Every
attempt of a job carries the same ``Idempotency-Key``, so a receiver can drop duplicates.

Destinations go through the egress policy (``egress.py``) where the connection is made: the
network backend below resolves the host itself, checks every address, and connects to a
checked one, for the first request and for each redirect hop.

Secrets: ``{{secret:NAME}}`` in the URL, query parameters, headers and body are resolved just
before sending, in memory only. The job row keeps the placeholders; results and errors are
scrubbed of the plaintexts; httpx's own logging of our requests (which shows resolved URLs) is
silenced, and jobline logs only ids, statuses and sizes.

>>> app.enqueue("http", {"url": "https://api.example.com/hooks", "body": {"event": "signup"},
...                      "headers": {"Authorization": "Bearer {{secret:api_token}}"}})  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import datetime as dt
import email.utils
import http.cookiejar
import importlib.metadata
import ipaddress
import json
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpcore
import httpx

from .. import egress, vault
from ..errors import DestinationBlocked, Fail, InvalidInput, RetryIn
from ..runtime.context import JobContext
from ..settings import Settings

log = logging.getLogger(__name__)

NAME = "http"
MAX_ATTEMPTS = 5                  # jobline.http_post / http_get use the same (migration 0003)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_TIMEOUT_MS = 5000         # pg_net's default
MAX_TIMEOUT_MS = 600_000
CONNECT_TIMEOUT = 5.0             # seconds; the whole call is bounded by timeout_ms as well
MAX_RETRY_AFTER = 86400.0
ERROR_BODY_CHARS = 500
KEPT_HEADERS = ("content-type", "content-length", "location", "retry-after", "etag", "date", "x-request-id")
PAYLOAD_FIELDS = frozenset({"url", "method", "headers", "params", "body", "timeout_ms", "idempotency_key"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE = re.compile(r"[\x00\r\n]")
_URL_START = re.compile(r"(?i)https?://|\{\{secret:")


class HttpCallFailed(Exception):
    """A call that may succeed when retried: timeout, connection error, 429 or 5xx."""


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
    url = payload.get("url")
    if not isinstance(url, str) or not url.strip() or len(url) > 8192:
        # The scheme and host are the egress policy's to judge (DestinationBlocked), once any
        # {{secret:...}} in the URL is filled in.
        raise Fail(f"http payload: url must be an http:// or https:// URL of at most 8192 characters, got {_clip(url)}")
    return Call(url=url.strip(), method=method.upper(),
                headers=check_headers(payload.get("headers"), "http payload: headers"),
                params=_check_params(payload.get("params")), body=payload.get("body"), has_body=has_body,
                timeout_ms=timeout_ms, idempotency_key=key)


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


# -- where it may go: the connection-level guard -------------------------------------------------


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's default backend, except that it resolves hosts itself, checks every address
    against the egress policy, and connects to one of those checked addresses (never to the
    name, which a second DNS answer could point elsewhere). TLS is unaffected: httpcore starts
    it above this stream with the URL's hostname for SNI and certificate checks."""

    def __init__(self, policy: egress.Policy):
        self.policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        addresses = await self._vetted(host, port, timeout)
        failure: Exception = httpcore.ConnectError(f"{host} resolved to no address")
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next checked address, as a resolver-order fallback
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise DestinationBlocked("outbound calls may not use a Unix socket", rule="unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    async def _vetted(self, host: str, port: int, timeout: float | None) -> list[egress.IPAddress]:
        name, literal = egress.parse_host(host)
        if literal is not None:
            self.policy.check_address(literal, name)
            return [literal]
        self.policy.check_name(name)
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {name} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {name}: {exc.strerror or exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        # Every address, not only the one we would use: a name that mixes public and internal
        # addresses is a rebinding setup, and which one is "first" is the resolver's choice.
        for address in addresses:
            self.policy.check_address(address, name)
        return addresses


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with :class:`GuardedBackend` underneath.

    httpx (0.28) has no parameter for httpcore's network backend, yet the backend is the one
    place every connection, each redirect hop's included, is made. So the connection pool the
    parent built (no connection is opened before the first request) is replaced by one with
    the same TLS context and limits and our backend.
    """

    def __init__(self, policy: egress.Policy, limits: httpx.Limits):
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )


# httpx logs every request at INFO with its full URL, and httpcore's DEBUG traces include
# response headers: for our calls those may hold resolved secrets (or echoes of them). A filter
# on those loggers drops their records while one of our calls is being made (a context
# variable, so other code's use of httpx in the same process still logs as usual).
_SENDING = contextvars.ContextVar("jobline_http_sending", default=False)


class _QuietWhileSending(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


_QUIET = _QuietWhileSending()
for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
              "httpcore.socks"):
    logging.getLogger(_name).addFilter(_QUIET)


# -- the caller ---------------------------------------------------------------------------------


class HttpCaller:
    """Sends the requests of ``http`` jobs (and of named HTTP functions) with one shared
    ``httpx.AsyncClient``, created on first use in the running loop; ``aclose()`` closes it.

    ``settings`` is read when the client is created and at each call (a callable, because the
    CLI gives a user's App its settings after the App was built)."""

    def __init__(self, settings: Callable[[], Settings]):
        self._settings = settings
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.policy = egress.Policy()

    @property
    def settings(self) -> Settings:
        return self._settings()

    def client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # a client's connections belong to one loop
            self._client, self._loop = self._new_client(), loop
        return self._client

    def _new_client(self) -> httpx.AsyncClient:
        settings = self.settings
        self.policy = egress.Policy.from_settings(settings)
        limits = httpx.Limits(max_connections=max(100, settings.concurrency), max_keepalive_connections=20)
        client = httpx.AsyncClient(
            transport=GuardedTransport(self.policy, limits),
            # No proxies or .netrc credentials from the environment: a proxy would connect on
            # our behalf where the policy cannot see, and .netrc would add credentials to calls.
            trust_env=False,
            follow_redirects=False,  # followed in send(), one checked hop at a time
            headers={"User-Agent": f"jobline/{_version()}", "Accept": "*/*",
                     # Compressed bodies could expand far beyond the size cap within one
                     # decoded chunk; uncompressed, the cap bounds what is read off the wire.
                     "Accept-Encoding": "identity"},
        )
        # One client serves every job: a cookie set by one receiver must not be sent with
        # another job's call.
        client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        return client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

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
                        timeout_ms=timeout_ms)
            return await self.send(call, ctx)

        return handler

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, call: Call, ctx: JobContext) -> dict:
        names = vault.references([call.url, call.headers, call.params, call.body])
        secrets: dict[str, str] = {}
        if names:  # SecretNotFound / ConfigError (no master key) fail this attempt; retried later
            secrets = await vault.load(ctx.store, vault.MasterKeys.from_settings(self.settings), names)
        token = _SENDING.set(True)
        try:
            return await self._send(call, ctx, secrets)
        except (Fail, RetryIn, HttpCallFailed):
            raise  # their messages are scrubbed already
        except Exception as exc:
            # The one place resolved secrets exist: whatever escapes (an httpx error, a header
            # encoding error) is re-raised as text without them, and without its cause chained,
            # because the executor stores the message and traceback of what reaches it.
            raise HttpCallFailed(_scrub(f"{type(exc).__name__}: {exc}", secrets)) from None
        finally:
            _SENDING.reset(token)

    async def _send(self, call: Call, ctx: JobContext, secrets: dict[str, str]) -> dict:
        url, headers, params, body = vault.substitute([call.url, call.headers, call.params, call.body], secrets)
        secret_headers = {name.lower() for name, value in call.headers.items() if vault.references(value)}
        for name, value in headers.items():
            if _BAD_HEADER_VALUE.search(value):
                raise Fail(f"http payload: the value of header {name} contains a line break or NUL once its "
                           "secrets are filled in")
        request_headers = httpx.Headers(headers)
        request_headers.setdefault("Idempotency-Key", call.idempotency_key or f"jobline-{ctx.job_id}")
        content = None
        if call.has_body:
            if isinstance(body, str):
                content = body.encode()
                request_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            else:
                content = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
                request_headers.setdefault("Content-Type", "application/json")

        client = self.client()  # sets self.policy on first use
        settings = self.settings
        scrub = lambda value: _scrub(value, secrets)  # noqa: E731
        seconds = call.timeout_ms / 1000
        began = time.perf_counter()
        elapsed = lambda: round((time.perf_counter() - began) * 1000, 1)  # noqa: E731
        what = f"{call.method} {scrub(url if len(url) <= 300 else url[:300] + '...')}"
        hops = 0
        try:
            async with asyncio.timeout(seconds):
                self.policy.check_url(url)
                # Merged into the URL's own query (httpx's params= would replace it; pg_net appends).
                target = httpx.URL(url).copy_merge_params(params) if params else url
                request = client.build_request(call.method, target, headers=request_headers, content=content,
                                               timeout=httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT)))
                while True:
                    response = await client.send(request, stream=True)
                    if response.next_request is None:
                        break
                    await response.aclose()
                    if hops >= settings.http_max_redirects:
                        raise Fail(f"{what}: more than {settings.http_max_redirects} redirects "
                                   f"(JOBLINE_HTTP_MAX_REDIRECTS); "
                                   f"the last one was {response.status_code} to "
                                   f"{scrub(response.headers.get('location', '?'))}")
                    hops += 1
                    following = response.next_request
                    self.policy.check_url(str(following.url))
                    if _origin(following.url) != _origin(request.url):
                        for name in secret_headers:  # httpx drops only Authorization across origins
                            following.headers.pop(name, None)
                    request = following
                try:
                    raw, truncated = await _read_capped(response, settings.http_max_body_bytes)
                finally:
                    await response.aclose()
        except DestinationBlocked as exc:
            log.warning("http.blocked", extra={"job_id": ctx.job_id, "attempt": ctx.attempt, "rule": exc.rule,
                                               "redirects": hops})
            raise Fail(scrub(f"DestinationBlocked: {exc}")) from None
        except (TimeoutError, httpx.TimeoutException) as exc:
            phase = _timeout_phase(exc)
            raise HttpCallFailed(f"{what} timed out after {elapsed():g} ms{phase} "
                                 f"(timeout_ms {call.timeout_ms})") from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            raise Fail(scrub(f"{what}: {type(exc).__name__}: {exc}")) from None
        except httpx.HTTPError as exc:
            raise HttpCallFailed(scrub(f"{what}: {type(exc).__name__}: {str(exc) or 'connection failed'}")) from None

        status, reason = response.status_code, response.reason_phrase
        text_body = _decode(raw, response.headers.get("content-type"), truncated)
        result = scrub({
            "status": status,
            "reason": reason,
            "elapsed_ms": elapsed(),
            "url": call.url,
            "final_url": str(response.url),
            "headers": {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers},
            "body": text_body,
            "truncated": truncated,
        })
        log.debug("http.responded", extra={"job_id": ctx.job_id, "attempt": ctx.attempt, "status": status,
                                           "elapsed_ms": result["elapsed_ms"], "bytes": len(raw), "redirects": hops})
        if status < 400:
            return result
        excerpt = result["body"] if isinstance(result["body"], str) else json.dumps(result["body"], ensure_ascii=False)
        message = f"HTTP {status} {result['reason']} after {result['elapsed_ms']:g} ms"
        if excerpt:
            message += f": {excerpt[:ERROR_BODY_CHARS]}"
        if status == 429:
            delay = retry_after(response.headers.get("retry-after"))
            if delay is not None:
                raise RetryIn(delay, message + f" (Retry-After: {delay:g} s)")
            raise HttpCallFailed(message)
        if status >= 500:
            raise HttpCallFailed(message)
        raise Fail(message)


async def _read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether there was more (then we stop reading:
    the connection is closed rather than drained)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        room = limit - size
        if len(chunk) > room:
            chunks.append(chunk[:room])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def _decode(raw: bytes, content_type: str | None, truncated: bool) -> Any:
    """JSON when it says so and arrived whole, else text (UTF-8, bad bytes replaced)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not truncated and raw and (media == "application/json" or media.endswith("+json")):
        try:
            return _without_nul(json.loads(raw, parse_constant=_refuse_constant))
        except ValueError:
            pass
    # PostgreSQL's jsonb cannot store NUL characters.
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity: keep the text instead


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped at one day;
    None when absent or unreadable.

    >>> retry_after("7"), retry_after("soon")
    (7.0, None)
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _timeout_phase(exc: BaseException) -> str:
    return {httpx.ConnectTimeout: " (connecting)", httpx.ReadTimeout: " (waiting for the response)",
            httpx.WriteTimeout: " (sending)", httpx.PoolTimeout: " (waiting for a connection)"}.get(type(exc), "")


def _scrub(value: Any, secrets: Mapping[str, str]) -> Any:
    return vault.scrub(value, secrets) if secrets else value


def _clip(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _version() -> str:
    try:
        return importlib.metadata.version("jobline")
    except importlib.metadata.PackageNotFoundError:
        return "dev"
