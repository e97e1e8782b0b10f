"""create_app: the HTTP API of `jobline serve` over an App, as a FastAPI application.

The API calls the core (App, Store, Tasks, auth); the core never imports the API. The server
process also runs the maintenance role (rescue of expired leases, remote ones included, and
pruning), so a deployment whose only workers are remote still gets its tasks rescued.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI

from .. import __version__, dashboard
from ..app import App
from ..operations import Operations
from ..runtime.connections import ConnectionLimit
from ..runtime.registry import SYNC_CONCURRENCY
from ..settings import Settings, forwarded_proxies
from . import errors
from .guard import Guard
from .methods import MethodCheck
from .metrics import Metrics
from .models import ErrorOut
from .routes import functions, jobs, limits, notifications, ops, pipelines, queues, schedules, secrets, tasks
from .security import FailureLimiter

log = logging.getLogger(__name__)

AUTH_FAILURE_LIMIT = 30        # failed authentications per address...
AUTH_FAILURE_WINDOW = 60.0     # ...within this many seconds, before 429


@dataclasses.dataclass
class Api:
    """What the routes share: the served App and this process's limiter, metrics and threads."""

    app: App
    limiter: FailureLimiter
    metrics: Metrics
    threads: ThreadPoolExecutor | None = None   # sync handlers invoked at /functions/v1/<name>
    connections: ConnectionLimit | None = None  # their ctx.connect() connections, bounded

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    def ops(self) -> Operations:
        """Every operation the routes perform, for the caller they authenticated."""
        return self.app.ops


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options of ``uvicorn.Config`` that `jobline serve` uses (as do the tests' servers).

    No access log (a line per request would drown the job events; /metrics counts them), no
    Server header, and X-Forwarded-For believed only from the proxies in
    JOBLINE_FORWARDED_ALLOW_IPS. uvicorn's own default believes it from 127.0.0.1, so a client on
    the same host could pick the address its failed authentications are counted under.

    >>> uvicorn.Config(create_app(App()), port=8000, **uvicorn_options(app.settings))  # doctest: +SKIP
    """
    proxies = forwarded_proxies(settings.forwarded_allow_ips) if settings.forwarded_allow_ips else None
    return {"log_config": None, "access_log": False, "server_header": False, "lifespan": "on",
            "proxy_headers": proxies is not None, "forwarded_allow_ips": proxies}


def create_app(app: App, *, maintenance: bool = True, clock: Callable[[], float] = time.monotonic,
               auth_failure_limit: int = AUTH_FAILURE_LIMIT,
               auth_failure_window: float = AUTH_FAILURE_WINDOW) -> FastAPI:
    """The HTTP API over ``app``: serve it with any ASGI server (`jobline serve` uses uvicorn).

    The store is opened when the server starts (the ASGI lifespan) and closed when it stops.
    ``clock`` drives the authentication-failure window (tests move it).

    >>> import uvicorn
    >>> uvicorn.run(create_app(App()), host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    api = Api(app=app, limiter=FailureLimiter(auth_failure_limit, auth_failure_window, clock=clock),
              metrics=Metrics())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await app.open_async()
        await app.reconcile_limits_async()  # flow control declared in code, as a worker records it
        await app.record_pipelines_async()  # so any process can start runs of the App's pipelines
        api.threads = ThreadPoolExecutor(max_workers=app.settings.concurrency or SYNC_CONCURRENCY,
                                         thread_name_prefix="jobline-invoke")  # sync functions invoked over HTTP
        api.connections = ConnectionLimit(app.settings.handler_connections, app.settings.pool_timeout)
        rescuer = await app.maintenance_async() if maintenance else None
        if rescuer is not None:
            rescuer.start()
        settings = app.settings
        if not (settings.service_key or settings.jwt_secret):
            log.warning("auth.unconfigured", extra={"reason": "neither JOBLINE_SERVICE_KEY nor JOBLINE_JWT_SECRET is "
                                                     "set: only API tokens authenticate"})
        log.info("api.started", extra={"functions": [f.name for f in app.registry], "maintenance": maintenance})
        try:
            yield
        finally:
            if rescuer is not None:
                await rescuer.stop()
            api.threads.shutdown(wait=False, cancel_futures=True)
            await app.close_async()
            log.info("api.stopped")

    server = FastAPI(
        title="jobline", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="The HTTP API of jobline: remote workers claim and report tasks, users enqueue and steer "
                    "their jobs, functions are invoked synchronously. Errors are "
                    '`{"error": {"code": ..., "message": ...}}`.',
        # A body without Content-Type is read as JSON (the Guard refuses other content types).
        strict_content_type=False,
        responses={422: {"model": ErrorOut, "description": "Invalid input"},
                   400: {"model": ErrorOut, "description": "Malformed JSON"},
                   413: {"model": ErrorOut, "description": "Body larger than 1 MiB + 64 KiB"},
                   415: {"model": ErrorOut, "description": "Body that is not JSON"}},
    )
    server.state.jobline = api
    errors.install(server)
    # claim-next-task before /functions/v1/{name}, which would otherwise take its path.
    routers = (tasks.router, functions.router, jobs.router, schedules.router, queues.router, limits.router,
               secrets.router, pipelines.router, ops.router, notifications.router)
    for router in routers:
        server.include_router(router)
    dashboard.install(server)  # the dashboard at /: its pages, /events, /static
    # The Guard outermost, so that it counts the 405s MethodCheck answers.
    server.add_middleware(MethodCheck, routes=[*server.routes, *(r for router in routers for r in router.routes)])
    server.add_middleware(Guard, metrics=api.metrics)
    return server
