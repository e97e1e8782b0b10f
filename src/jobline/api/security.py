"""Who is calling, and how often they fail to say.

Every authenticated route reads ``Authorization: Bearer <token>`` and turns it into a
:class:`~jobline.auth.Principal` with ``Operations.authenticate`` (service key, user JWT or
API token). A missing or invalid credential is 401 with ``WWW-Authenticate: Bearer``; a valid
one without the right is 403.

Authentication failures (401s) are counted per client address in a sliding window kept in this
process (:class:`FailureLimiter`). Once an address has ``limit`` failures within ``window``
seconds, every request it makes that needs a credential is answered 429 (``Retry-After`` says
when the oldest failure leaves the window) before its credential is even looked at, so guessing
cannot go on; other addresses are unaffected, and so are the routes that need no credential.
With several server processes each keeps its own count.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from ..auth import SERVICE, Principal, bearer_token, secret_matches
from ..errors import Forbidden, Unauthenticated
from .errors import ApiError

log = logging.getLogger(__name__)

# Declares the scheme in the OpenAPI spec; the header itself is read by auth.bearer_token.
bearer_scheme = HTTPBearer(auto_error=False, description="The service key, a user JWT or a user API token")


class FailureLimiter:
    """Authentication failures per client address in a sliding window, in memory.

    >>> limiter = FailureLimiter(limit=30, window=60.0)
    >>> limiter.retry_after("203.0.113.7") is None
    True
    """

    def __init__(self, limit: int = 30, window: float = 60.0, *, clock: Callable[[], float] = time.monotonic,
                 max_addresses: int = 100_000):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_addresses = max_addresses
        # Only the latest `limit` failures of an address matter, so each deque is bounded.
        self._failures: dict[str, collections.deque[float]] = {}

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None when it may now."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        if len(failures) < self.limit:
            return None
        return failures[0] + self.window - now

    def record(self, address: str) -> bool:
        """Count a failure; True when it brings ``address`` to the limit."""
        failures = self._failures.get(address)
        if failures is None:
            if len(self._failures) >= self.max_addresses:
                self._forget_idle()
            failures = self._failures[address] = collections.deque(maxlen=self.limit)
        failures.append(self.clock())
        return len(failures) == self.limit

    def _forget_idle(self) -> None:
        """Bound memory under a flood of addresses: drop expired entries, then the oldest."""
        cutoff = self.clock() - self.window
        for address in [a for a, f in self._failures.items() if not f or f[-1] <= cutoff]:
            del self._failures[address]
        while len(self._failures) >= self.max_addresses:
            del self._failures[next(iter(self._failures))]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def api_state(request: Request):
    return request.app.state.jobline


async def authenticate_request(request: Request) -> Principal:
    """The caller of ``request``; ApiError 429 while its address is over the failure limit."""
    api = api_state(request)
    address = _admit(request)
    try:
        token = bearer_token(request.headers.get("authorization"))
        return await api.ops.authenticate(token)
    except Unauthenticated:
        _refused(request, address)
        raise
    except Forbidden:
        api.metrics.auth_failures.labels(reason="forbidden").inc()
        raise


async def principal(request: Request, _=Depends(bearer_scheme)) -> Principal:
    """Dependency: the authenticated caller (401, 403 or 429 otherwise)."""
    return await authenticate_request(request)


async def service(request: Request, caller: Principal = Depends(principal)) -> Principal:
    """Dependency: the service (the service key or a service-role JWT); users get 403."""
    if not caller.is_service:
        api_state(request).metrics.auth_failures.labels(reason="forbidden").inc()
        raise Forbidden("this route needs the service key (or a service_role JWT); a user's credential cannot use it")
    return caller


async def runner(request: Request, _=Depends(bearer_scheme)) -> Principal:
    """Dependency of POST /api/jobs/run: the runner secret (JOBLINE_RUNNER_SECRET) or any
    service credential; users get 403."""
    api = api_state(request)
    address = _admit(request)
    try:
        token = bearer_token(request.headers.get("authorization"))
        if secret_matches(token, api.settings.runner_secret):
            return SERVICE
        caller = await api.ops.authenticate(token)
    except Unauthenticated:
        _refused(request, address)
        raise
    if not caller.is_service:
        api.metrics.auth_failures.labels(reason="forbidden").inc()
        raise Forbidden("POST /api/jobs/run needs the runner secret (JOBLINE_RUNNER_SECRET) or the service key")
    return caller


def _admit(request: Request) -> str:
    """The client's address, or ApiError 429 when it is over the failure limit."""
    api = api_state(request)
    address = client_address(request)
    wait = api.limiter.retry_after(address)
    if wait is not None:
        api.metrics.auth_failures.labels(reason="rate_limited").inc()
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, "rate_limited", f"too many failed authentications from this address; try again in "
                                            f"{seconds} s", {"Retry-After": str(seconds)})
    return address


def _refused(request: Request, address: str) -> None:
    api = api_state(request)
    api.metrics.auth_failures.labels(reason="unauthenticated").inc()
    if api.limiter.record(address):
        log.warning("auth.rate_limited", extra={"client": address, "failures": api.limiter.limit,
                                                "window_s": api.limiter.window})
    else:
        log.info("auth.refused", extra={"client": address, "route": request.url.path})
