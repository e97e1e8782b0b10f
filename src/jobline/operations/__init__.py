"""The one operations layer: every operation a caller may perform, each taking the caller's
identity (a Principal) first. The HTTP API, the CLI, the dashboard, the Client's database
fallback and App all act through it, and policy.py applies the owner rule for all of them, so
that no interface can drift from another.

>>> ops = Operations(store, settings, registry)                          # doctest: +SKIP
>>> await ops.jobs.retry(caller, 42)                                     # doctest: +SKIP
>>> await ops.schedules.pause(await ops.authenticate(token), "nightly")   # doctest: +SKIP
"""

from __future__ import annotations

from .. import auth
from ..auth import SERVICE, Principal
from ..db import migrate
from ..db.store import Store
from ..runtime.registry import Registry
from ..settings import Settings
from .activity import Activity
from .jobs import Jobs, Page
from .limits import Limits
from .notifications import Notifications
from .pipelines import Pipelines
from .queues import Queues
from .schedules import Schedules
from .secrets import Secrets
from .sessions import Session, Sessions
from .tasks import Task, Tasks
from .tokens import Tokens

__all__ = ["SERVICE", "Operations", "Page", "Principal", "Session", "Task"]


class Operations:
    def __init__(self, store: Store, settings: Settings, registry: Registry | None = None):
        registry = registry if registry is not None else Registry()
        self.store = store
        self.settings = settings
        self.jobs = Jobs(store, registry)
        self.schedules = Schedules(store, registry)
        self.queues = Queues(store)
        self.limits = Limits(store)
        self.pipelines = Pipelines(store)
        self.tasks = Tasks(store, settings.remote_lease_seconds)
        self.secrets = Secrets(store, settings)
        self.tokens = Tokens(store)
        self.activity = Activity(store)
        self.sessions = Sessions(store, settings)
        self.notifications = Notifications(store, settings)

    @classmethod
    async def connect(cls, settings: Settings, *, database_url: str | None = None, pool_size: int = 4,
                      registry: Registry | None = None) -> Operations:
        """Operations over a pool of its own (the Client's database fallback); close() it."""
        store = Store(database_url or settings.database_url, max_size=pool_size,
                      prepared_statements=settings.prepared_statements, timeout=settings.pool_timeout,
                      listen_url=settings.listen_database_url)
        try:
            await store.open()
        except BaseException:
            await store.close()
            raise
        return cls(store, settings, registry)

    async def close(self) -> None:
        await self.store.close()

    async def authenticate(self, token: str) -> Principal:
        """The caller a bearer token stands for: the service key, a user JWT or an API token
        (auth.py); Unauthenticated or Forbidden otherwise."""
        return await auth.authenticate(token, self.settings, self.store.api_token_use)

    async def pending_migrations(self) -> list[str]:
        """The migrations this jobline has that the database lacks (readiness checks)."""
        applied = set(await self.store.schema_migration_list())
        return [f"{m.version:04d}_{m.name}" for m in migrate.available() if m.version not in applied]
