"""JobContext: what a handler may know about the job it runs, and a way into the database.

A remote worker (`jobline worker --remote`) has no database: its contexts hold no store, and
asking one for a connection raises a JoblineError saying so.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import psycopg

from ..errors import JoblineError

if TYPE_CHECKING:
    from ..db.store import Store


@dataclasses.dataclass(frozen=True)
class JobContext:
    job_id: int | None      # None: a synchronous call at /functions/v1/<name>, which is no job
    attempt: int
    max_attempts: int
    function: str
    queue: str
    owner: str | None
    worker_id: str
    store: Store | None = dataclasses.field(repr=False)   # None in a remote worker

    @property
    def database_url(self) -> str:
        return self.require_store().url

    def connect(self) -> psycopg.Connection:
        """A new sync connection to jobline's database (use it as a context manager)."""
        return psycopg.connect(self.require_store().url)

    async def connect_async(self) -> psycopg.AsyncConnection:
        """A new async connection to jobline's database (use it as an async context manager)."""
        return await psycopg.AsyncConnection.connect(self.require_store().url)

    def require_store(self) -> Store:
        """The store, or a JoblineError when the job runs in a remote worker (no database)."""
        if self.store is None:
            raise JoblineError(f"job {self.job_id} ({self.function}) runs in a remote worker, which has no "
                               "database connection: run this function in a worker connected to the database, "
                               "or pass what it needs in the payload")
        return self.store
