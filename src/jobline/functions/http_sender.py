"""Sending the calls of ``functions/http.py``: one shared ``httpx.AsyncClient`` whose connections
go through the egress policy, and reading what came back into the job's result.

Imported by ``HttpCaller.send`` with the first call, never by ``import jobline``: httpx brings
httpcore, anyio, h11 (and its CLI brings click), about 9 MB that a worker running no ``http``
job, or a process that only enqueues, does not need. The rules on secrets and destinations are
in ``functions/http.py``'s docstring.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import contextvars
import dataclasses
import datetime as dt
import email.utils
import hashlib
import http.cookiejar
import importlib.metadata
import ipaddress
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpcore
import httpx

from .. import egress, vault
from ..errors import DestinationBlocked, Fail, InvalidInput, RetryIn
from ..pipeline import render_template
from ..runtime.context import JobContext
from ..settings import Settings
from .http import _BAD_HEADER_VALUE, Call, HttpCallFailed

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0             # seconds; the whole call is bounded by timeout_ms as well
MAX_RETRY_AFTER = 86400.0
ERROR_BODY_CHARS = 500
# The response's headers are kept while their names and values add up to at most this many bytes
# (UTF-8); any that would go over are left out and `headers_truncated` is set. (httpcore reads
# at most 100 KiB of headers.)
MAX_HEADER_BYTES = 16 * 1024


async def _check_queued_by_operator(ctx: JobContext) -> None:
    """Secrets are filled in only in calls the operator wrote (DESIGN's secrets rule): a job
    that a plain database role queued (jobline.http_post in its own SQL, which runs as itself)
    acts for that role, whose calls hold data, not the operator's references."""
    if ctx.job_id is None or ctx.store is None:
        return  # a synchronous call of a named function (the gateway decides), or a remote worker
    who = await ctx.store.job_role_get(ctx.job_id)
    if who is not None and not who["operator"]:
        raise Fail(f"this call holds {{{{secret:...}}}} references, and job {ctx.job_id} acts for database role "
                   f"{who['username']!r}, which is not jobline's operator (a superuser or the owner of schema "
                   "jobline): secrets are filled in only in calls the operator queued")


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
        timing = _TIMING.get() or _Timing()
        with timing.measuring("dns"):
            addresses = await self._vetted(host, port, timeout)
        failure: Exception = httpcore.ConnectError("the host resolved to no address")
        with timing.measuring("handshake"):
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
        # The URL being requested as the job wrote it, when it holds a secret's value: then
        # messages name that instead of the host, unless it spells the host out.
        current = _WRITTEN.get()
        written = current.url if current is not None else None
        if literal is not None:
            self.policy.check_address(literal, name, written)
            return [literal]
        self.policy.check_name(name, written)
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout("resolving the host timed out") from None
        except OSError as exc:
            if egress.host_as_written(written):
                raise httpcore.ConnectError(f"cannot resolve {name}: {exc.strerror or exc}") from None
            # Only the resolver's reason (gaierror's strerror), never str(exc), which may quote the name.
            reason = f": {exc.strerror}" if isinstance(exc, socket.gaierror) and exc.strerror else ""
            raise httpcore.ConnectError(f"cannot resolve the host of {written} (filled in from a secret)"
                                        f"{reason}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        # Every address, not only the one we would use: a name that mixes public and internal
        # addresses is a rebinding setup, and which one is "first" is the resolver's choice.
        for address in addresses:
            self.policy.check_address(address, name, written)
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


@dataclasses.dataclass
class _Written:
    """The URL being requested as the job wrote it (placeholders, not values), or None when the
    URL holds no secret's value; updated at each redirect hop. GuardedBackend reads it through
    _WRITTEN, as it has no other way to learn which call a connection is for."""

    url: str | None = None


_WRITTEN: contextvars.ContextVar[_Written | None] = contextvars.ContextVar("jobline_http_written", default=None)


@dataclasses.dataclass
class _Timing:
    """Where an attempt's time went, for the timeout message pg_net writes: resolving hosts and
    making connections (TCP, then TLS), summed over redirect hops. The rest of the elapsed time
    is the HTTP exchange. A reused keep-alive connection adds nothing to either."""

    dns: float = 0.0          # seconds
    handshake: float = 0.0
    _tls_began: float = 0.0

    @contextlib.contextmanager
    def measuring(self, phase: str):
        began = time.perf_counter()
        try:
            yield
        finally:  # a timeout that cuts the phase short counts too
            setattr(self, phase, getattr(self, phase) + time.perf_counter() - began)

    async def trace(self, event: str, info: dict) -> None:
        """httpcore's trace extension: TLS starts above the stream GuardedBackend made."""
        if event == "connection.start_tls.started":
            self._tls_began = time.perf_counter()
        elif event.startswith("connection.start_tls."):
            self.handshake += time.perf_counter() - self._tls_began

    def timeout_message(self, timeout_ms: int, elapsed_ms: float) -> str:
        """pg_net's words for a timeout, so SQL that looks for them keeps working."""
        dns, handshake = self.dns * 1000, self.handshake * 1000
        http = max(elapsed_ms - dns - handshake, 0.0)
        return (f"Timeout of {timeout_ms} ms reached. Total time: {elapsed_ms:f} ms (DNS time: {dns:f} ms, "
                f"TCP/SSL handshake time: {handshake:f} ms, HTTP Request/Response time: {http:f} ms)")


_TIMING: contextvars.ContextVar[_Timing | None] = contextvars.ContextVar("jobline_http_timing", default=None)


class _QuietWhileSending(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _SENDING.get()


_QUIET = _QuietWhileSending()
for _name in ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
              "httpcore.socks"):
    logging.getLogger(_name).addFilter(_QUIET)


# -- the sender ---------------------------------------------------------------------------------


class Sender:
    """Sends calls with one shared ``httpx.AsyncClient``, created on first use in the running
    loop; ``aclose()`` closes it. ``settings`` as for ``HttpCaller``."""

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
        limits = httpx.Limits(max_connections=max(100, settings.concurrency or 0), max_keepalive_connections=20)
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

    async def send(self, call: Call, ctx: JobContext) -> dict:
        refs = vault.references(call.template)
        secrets: dict[str, str] = {}
        if refs:
            await _check_queued_by_operator(ctx)
            if ctx.owner is None and vault.split(refs)[1]:
                raise Fail("{{owner_secret:NAME}} names a secret of the job's owner, and this job has no owner")
            # SecretNotFound / ConfigError (no master key) fail this attempt; retried later.
            secrets = await vault.load(ctx.require_store(), vault.MasterKeys.from_settings(self.settings), refs,
                                       ctx.owner)
        scrubber = vault.Scrubber(secrets)
        written = _Written(call.url if vault.references(call.url) else None)
        timing = _Timing()
        sending, writing, timed = _SENDING.set(True), _WRITTEN.set(written), _TIMING.set(timing)
        try:
            return await self._send(call, ctx, secrets, scrubber, written, timing)
        except (Fail, RetryIn, HttpCallFailed):
            raise  # their messages hold no secret's value already
        except Exception as exc:
            # The one place resolved secrets exist: whatever escapes (a header encoding error, a
            # bug) is re-raised as text without them, and without its cause chained, because
            # the executor stores the message and traceback of what reaches it.
            message = _described(exc, scrubber, quotes_request=True)
            raise HttpCallFailed(message, result=_no_response(call, message)) from None
        finally:
            _TIMING.reset(timed)
            _WRITTEN.reset(writing)
            _SENDING.reset(sending)

    async def _send(self, call: Call, ctx: JobContext, secrets: dict[str, str], scrubber: vault.Scrubber,
                    written: _Written, timing: _Timing) -> dict:
        url, headers, *data = vault.substitute(call.template, secrets)
        params, body = (call.params, call.body) if call.literal_data else data
        if ctx.upstream and call.has_body:
            # A pipeline step's {{upstream.STEP.FIELD}}, filled in after the secrets: upstream
            # results are data, so the text they bring is never searched for references.
            try:
                body = render_template(body, ctx.upstream)
            except InvalidInput as exc:  # it quotes the body, whose secrets are filled in by now
                raise Fail(f"http payload: body: {scrubber.scrub(str(exc))}") from None
        secret_headers = {name.lower() for name, value in call.headers.items() if vault.references(value)}
        for name, value in headers.items():
            if _BAD_HEADER_VALUE.search(value):
                raise Fail(f"http payload: the value of header {name} contains a line break or NUL once its "
                           "secrets are filled in")
        request_headers = httpx.Headers(headers)
        request_headers.setdefault("Idempotency-Key", call.idempotency_key or _idempotency_key(ctx))
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
        limit = settings.http_max_body_bytes
        seconds = call.timeout_ms / 1000
        began = time.perf_counter()
        elapsed = lambda: round((time.perf_counter() - began) * 1000, 1)  # noqa: E731
        # The request line of error messages, from the URL as written: it holds placeholders,
        # never values, so cutting it cannot leave part of a value behind.
        what = f"{call.method} {call.url if len(call.url) <= 300 else call.url[:300] + '...'}"
        hops = 0
        try:
            async with asyncio.timeout(seconds):
                self.policy.check_url(url, written.url)
                # Merged into the URL's own query (httpx's params= would replace it; pg_net appends).
                target = httpx.URL(url).copy_merge_params(params) if params else url
                request = client.build_request(call.method, target, headers=request_headers, content=content,
                                               timeout=httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT)),
                                               extensions={"trace": timing.trace})
                while True:
                    response = await client.send(request, stream=True)
                    if response.next_request is None:
                        break
                    await response.aclose()
                    if hops >= settings.http_max_redirects:
                        message = (f"{what}: more than {settings.http_max_redirects} redirects "
                                   f"(JOBLINE_HTTP_MAX_REDIRECTS); "
                                   f"the last one was {response.status_code} to "
                                   f"{_kept(response.headers.get('location', '?'), scrubber)}")
                        raise Fail(message, result=_no_response(call, message, elapsed()))
                    hops += 1
                    following = response.next_request
                    # A redirect target is the receiver's text, and a relative one keeps the
                    # host of the URL before it, which may have come from a secret.
                    written.url = _written_hop(str(following.url), scrubber)
                    self.policy.check_url(str(following.url), written.url)
                    if _origin(following.url) != _origin(request.url):
                        for name in secret_headers:  # httpx drops only Authorization across origins
                            following.headers.pop(name, None)
                    request = following
                try:
                    # A secret's value cut by the cap is recognised only whole: read enough
                    # beyond it to hold any value that starts before it, scrub, then cut.
                    raw, more = await _read_capped(response, limit + scrubber.margin_bytes)
                finally:
                    await response.aclose()
        except DestinationBlocked as exc:
            log.warning("http.blocked", extra={"job_id": ctx.job_id, "attempt": ctx.attempt, "rule": exc.rule,
                                               "redirects": hops})
            message = f"DestinationBlocked: {_kept_text(str(exc), scrubber)}"
            raise Fail(message, result=_no_response(call, message, elapsed())) from None
        except (TimeoutError, httpx.TimeoutException) as exc:
            took = elapsed()
            raise HttpCallFailed(f"{what} timed out after {took:g} ms{_timeout_phase(exc)} "
                                 f"(timeout_ms {call.timeout_ms})",
                                 result=_no_response(call, timing.timeout_message(call.timeout_ms, took), took,
                                                     timed_out=True)) from None
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL) as exc:
            message = f"{what}: {_described(exc, scrubber, quotes_request=True)}"
            raise Fail(message, result=_no_response(call, message, elapsed())) from None
        except httpx.HTTPError as exc:
            message = f"{what}: {_described(exc, scrubber)}"
            raise HttpCallFailed(message, result=_no_response(call, message, elapsed())) from None

        status = response.status_code
        truncated = more or len(raw) > limit
        body, text, withheld = _body(raw, limit, truncated, response.headers.get("content-type"), scrubber)
        headers, spelled, headers_truncated = _headers(response.headers, scrubber)
        result = {
            "status": status,
            "reason": _kept(response.reason_phrase, scrubber),
            "elapsed_ms": elapsed(),
            "url": call.url,
            "final_url": _final_url(call, response, hops, secrets, scrubber),
            "headers": headers,
            "body": body,
            "truncated": truncated,
        }
        if spelled:
            result["header_names"] = spelled
        if headers_truncated:
            result["headers_truncated"] = True
        if text is not None:
            result["text"] = text
        if withheld is not None:
            result["body_withheld"] = withheld
        log.debug("http.responded", extra={"job_id": ctx.job_id, "attempt": ctx.attempt, "status": status,
                                           "elapsed_ms": result["elapsed_ms"], "bytes": len(raw), "redirects": hops})
        if not call.keep_response:
            result = {key: result[key] for key in ("status", "reason", "elapsed_ms", "url")}
        if status < 400:
            return result
        # The first line is what logs show (runtime.executor.first_line): status and timing only.
        # The body, which may be anything the receiver echoes, follows on the next line.
        summary = f"HTTP {status} {httpx.codes.get_reason_phrase(status)}".rstrip()
        summary += f" after {result['elapsed_ms']:g} ms"
        delay = retry_after(response.headers.get("retry-after")) if status == 429 else None
        if delay is not None:
            summary += f" (Retry-After: {delay:g} s)"
        if not call.keep_response:
            excerpt = ""
        elif withheld is not None:
            excerpt = f"(body withheld: {withheld['reason']})"
        else:
            excerpt = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        message = summary + (f"\n{excerpt[:ERROR_BODY_CHARS]}" if excerpt else "")
        # The response is the attempt's result all the same: jobline._http_response shows it.
        if delay is not None:
            raise RetryIn(delay, message, result=result)
        if status == 429 or status >= 500:
            raise HttpCallFailed(message, result=result)
        raise Fail(message, result=result)


def _no_response(call: Call, error: str, elapsed_ms: float | None = None, *, timed_out: bool = False) -> dict:
    """The result of an attempt that got no response: why (our own text, or text scrubbed
    already), and whether it timed out (jobline._http_response's timed_out)."""
    result = {"url": call.url, "error": error, "timed_out": timed_out}
    if elapsed_ms is not None:
        result["elapsed_ms"] = elapsed_ms
    return result


def _headers(headers: httpx.Headers, scrubber: vault.Scrubber) -> tuple[dict, dict, bool]:
    """Every response header, scrubbed, within MAX_HEADER_BYTES: (headers by lower-case name, a
    repeated one's values joined with ", "; the names the server spelled otherwise, by lower-case
    name; whether some were left out). Taken in order, leaving out any header that would go over
    the cap (so one huge header does not push out a short Content-Type after it). A value is
    scrubbed whole and never cut, so a cut cannot leave part of a secret's value behind."""
    kept: dict[str, str] = {}
    spelled: dict[str, str] = {}
    size = 0
    left_out = False
    for raw_name, raw_value in headers.raw:
        name = _kept_text(raw_name.decode("latin-1"), scrubber)
        value = _kept_text(raw_value.decode(headers.encoding, errors="replace"), scrubber)
        grown = size + len(name.encode()) + len(value.encode())
        if grown > MAX_HEADER_BYTES:
            left_out = True
            continue
        size = grown
        key = name.lower()
        kept[key] = f"{kept[key]}, {value}" if key in kept else value
        if name != key:
            spelled[key] = name
    return kept, spelled, left_out


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


def _body(raw: bytes, limit: int, truncated: bool, content_type: str | None,
          scrubber: vault.Scrubber) -> tuple[Any, str | None, dict | None]:
    """The body as the result keeps it: parsed JSON when it says it is JSON and is whole, else
    text, scrubbed; the text as it came (decoded, scrubbed) when the body is parsed JSON, so
    jobline._http_response.content is the body as sent rather than JSON written again; and,
    when it is withheld instead (then both are None), why, its size and its SHA-256.

    It is decoded by its byte-order mark, else its declared charset, else as JSON's rules
    detect (RFC 8259: UTF-8, 16 or 32) for JSON, else as UTF-8. A scrubber sees values only in
    text it can read, so when the call used secrets, a body that is not cleanly text in that
    encoding (bytes that do not decode, or NUL characters, which UTF-16 read as UTF-8 gives) is
    withheld. Without secrets there is nothing to hide: bad bytes become U+FFFD."""
    media, declared = _content_type(content_type)
    is_json = media == "application/json" or media.endswith("+json")
    encoding = _bom_encoding(raw) or declared or (json.detect_encoding(raw) if is_json else "utf-8")
    try:
        text, head = _decode(raw, limit if truncated else len(raw), encoding, "strict" if scrubber else "replace")
    except UnicodeDecodeError:
        return None, None, _withheld(raw[:limit], f"it is not {encoding} text, and the call sent secrets")
    if scrubber and "\x00" in text:
        return None, None, _withheld(raw[:limit], f"it holds NUL characters as {encoding} (text in another "
                                                  "encoding?), and the call sent secrets")
    # PostgreSQL's jsonb cannot store NUL characters.
    shown = _kept_text(scrubber.scrub_cut(text.replace("\x00", "\ufffd"), head), scrubber)
    if is_json and not truncated and text.strip():
        try:
            return _kept(_without_nul(json.loads(text, parse_constant=_refuse_constant)), scrubber), shown, None
        except (ValueError, RecursionError):
            pass  # kept as text
    return shown, None, None


def _content_type(value: str | None) -> tuple[str, str | None]:
    """The media type (lower case) and the declared charset, if Python knows it."""
    media, _, parameters = (value or "").partition(";")
    charset = None
    for parameter in parameters.split(";"):
        key, _, given = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = given.strip().strip('"').lower() or None
    if charset is not None:
        try:
            charset = codecs.lookup(charset).name
        except LookupError:
            charset = None
    return media.strip().lower(), charset


_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # UTF-32 LE before UTF-16 LE


def _bom_encoding(raw: bytes) -> str | None:
    return next((encoding for bom, encoding in _BOMS if raw.startswith(bom)), None)


def _decode(raw: bytes, head_bytes: int, encoding: str, errors: str) -> tuple[str, int]:
    """``raw`` decoded, and how many characters of it come from its first ``head_bytes`` bytes
    (a character the cut splits is not among them). What lies past the cut is decoded too, for
    the scrubber, which must see a value that starts before the cut whole; a character cut off
    at the very end of ``raw`` (where reading stopped) is dropped."""
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    head = decoder.decode(raw[:head_bytes], final=head_bytes >= len(raw))
    return head + decoder.decode(raw[head_bytes:]), len(head)


def _withheld(raw: bytes, reason: str) -> dict:
    return {"reason": reason, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}


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


NOT_SHOWN = "(not shown: it holds a secret's value)"


def _kept_text(text: str, scrubber: vault.Scrubber) -> str:
    """Text that came from elsewhere (the receiver, a library), scrubbed; replaced whole when a
    value still shows through (percent-decoded or with its escapes read, say)."""
    if not scrubber:
        return text
    shown = scrubber.scrub(text)
    return NOT_SHOWN if scrubber.reveals(shown) else shown


def _kept(value: Any, scrubber: vault.Scrubber) -> Any:
    """:func:`_kept_text` for every string in a str/dict/list."""
    if not scrubber:
        return value
    if isinstance(value, str):
        return _kept_text(value, scrubber)
    if isinstance(value, Mapping):
        return {_kept(k, scrubber): _kept(v, scrubber) for k, v in value.items()}
    if isinstance(value, list):
        return [_kept(v, scrubber) for v in value]
    return value


def _described(exc: BaseException, scrubber: vault.Scrubber, *, quotes_request: bool = False) -> str:
    """``Type: message`` of an exception from httpx or below, fit to keep. When the call holds
    secrets, the message of an error about the request itself (a bad URL or header, which
    such messages quote in part, e.g. "Invalid port: '...'") is left out: a part of a value is
    not something a scrubber can recognise."""
    name = type(exc).__name__
    text = str(exc) or "connection failed"
    if not scrubber:
        return f"{name}: {text}"
    if quotes_request:
        return f"{name} (its message is not shown: it may quote the request, which holds secret values)"
    shown = _kept_text(text, scrubber)
    return f"{name}: {shown}" if shown != NOT_SHOWN else f"{name} {NOT_SHOWN}"


def _written_hop(url: str, scrubber: vault.Scrubber) -> str | None:
    """How to name a redirect target in messages: None when it holds no secret's value (then
    it is named as it is), else scrubbed (its host then goes unnamed: see egress.check_url)."""
    if not scrubber:
        return None
    shown = scrubber.scrub(url)
    if scrubber.reveals(shown):
        return "(a redirect target that holds a secret's value)"
    return None if shown == url else shown


def _final_url(call: Call, response: httpx.Response, hops: int, secrets: Mapping[str, str],
               scrubber: vault.Scrubber) -> str:
    """Where the call ended. Without secrets, the URL httpx requested; without redirects, that
    URL as the payload wrote it (built, not scrubbed); after redirects, the last target
    scrubbed, or, if a value still shows through, the first URL as written and a note."""
    if not secrets:
        return str(response.url)
    if hops == 0 or scrubber.reveals(scrubber.scrub(str(response.url))):
        written = _as_written(call)
        return written if hops == 0 else (f"{written} (redirected {hops} time(s); the final URL is not shown: "
                                          "it holds a secret's value)")
    return scrubber.scrub(str(response.url))


def _as_written(call: Call) -> str:
    """The first request's URL, query parameters merged, with each ``{{secret:NAME}}`` kept as
    written. httpx builds it (so it reads like the URL it sent) from markers that stand in for
    the placeholders: lower-case letters and digits, which no part of a URL changes."""
    refs = sorted(vault.references([call.url, call.params]))
    tag = os.urandom(6).hex()
    markers = {ref: f"jl{tag}s{i}x" for i, ref in enumerate(refs)}
    url, params = vault.substitute([call.url, call.params], markers)
    try:
        text = str(httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url))
    except (httpx.InvalidURL, TypeError, ValueError):
        return call.url
    for ref, marker in markers.items():
        text = text.replace(marker, ref)
    return text


def _idempotency_key(ctx: JobContext) -> str:
    """The same for every attempt of a job; a call at /functions/v1/<name>, which is no job and
    is never retried, gets one of its own."""
    return f"jobline-{ctx.job_id}" if ctx.job_id is not None else f"jobline-call-{os.urandom(16).hex()}"


def _version() -> str:
    try:
        return importlib.metadata.version("jobline")
    except importlib.metadata.PackageNotFoundError:
        return "dev"
