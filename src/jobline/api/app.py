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
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI

from .. import __version__
from ..app import App
from ..db.store import Store
from ..runtime.connections import ConnectionLimit
from ..runtime.maintenance import Maintenance
from ..settings import Settings
from ..tasks import Tasks
from . import errors
from .guard import Guard
from .metrics import Metrics
from .models import ErrorOut
from .routes import functions, jobs, ops, schedules, tasks
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
    tasks: Tasks | None = None

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    def store(self) -> Store:
        return self.app.store


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
        store = await app.open_async()
        api.tasks = Tasks(store, app.settings.remote_lease_seconds)
        api.threads = ThreadPoolExecutor(max_workers=app.settings.concurrency, thread_name_prefix="jobline-invoke")
        api.connections = ConnectionLimit(app.settings.handler_connections, app.settings.pool_timeout)
        rescuer = Maintenance(store, app.settings) if maintenance else None
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
    server.add_middleware(Guard, metrics=api.metrics)
    # claim-next-task before /functions/v1/{name}, which would otherwise take its path.
    server.include_router(tasks.router)
    server.include_router(functions.router)
    server.include_router(jobs.router)
    server.include_router(schedules.router)
    server.include_router(ops.router)
    return server
