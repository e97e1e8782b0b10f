"""JobContext: what a handler may know about the job it runs, and a way into the database.

A remote worker (`jobline worker --remote`) has no database: its contexts hold no store, and
asking one for a connection raises a JoblineError saying so. Connections are bounded per
process (runtime/connections.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import psycopg

from ..errors import JoblineError

if TYPE_CHECKING:
    from ..db.store import Store
    from .connections import ConnectionLimit

log = logging.getLogger(__name__)


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
    # The process's bound on handler connections (None: unbounded, for a context made by hand).
    connections: ConnectionLimit | None = dataclasses.field(default=None, repr=False, compare=False)
    # A pipeline step's view of the steps it runs after: their results by step name
    # (``ctx.upstream["generate"]``); empty for a job that is no pipeline step.
    upstream: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    _opened: list = dataclasses.field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def database_url(self) -> str:
        return self.require_store().url

    def connect(self) -> psycopg.Connection:
        """A new sync connection to jobline's database. Use it as a context manager, which closes
        it; at most JOBLINE_HANDLER_CONNECTIONS are open at once in a process, and one more
        waits up to JOBLINE_POOL_TIMEOUT for another to close (then DatabaseError).

        >>> with ctx.connect() as conn:  # doctest: +SKIP
        ...     conn.execute("UPDATE accounts SET active = false WHERE id = %s", [payload["id"]])
        """
        url = self.require_store().url
        if self.connections is None:
            return psycopg.connect(url)
        conn = self.connections.connect(url)
        self._opened.append(conn)
        return conn

    async def connect_async(self) -> psycopg.AsyncConnection:
        """A new async connection to jobline's database (use it as an async context manager),
        bounded as :meth:`connect`.

        >>> async with await ctx.connect_async() as conn:  # doctest: +SKIP
        ...     await conn.execute("SELECT 1")
        """
        url = self.require_store().url
        if self.connections is None:
            return await psycopg.AsyncConnection.connect(url)
        conn = await self.connections.connect_async(url)
        self._opened.append(conn)
        return conn

    def close_left_open(self) -> None:
        """Close the sync connections the handler left open, once it has returned (the executor
        calls this): frees their slots."""
        self._warn_left_open()
        for conn in self._opened:
            if isinstance(conn, psycopg.Connection):
                conn.close()

    async def close_left_open_async(self) -> None:
        """Close every connection the handler left open, once it has returned (the executor calls
        this): frees their slots."""
        self._warn_left_open()
        for conn in self._opened:
            if isinstance(conn, psycopg.AsyncConnection):
                await conn.close()
            else:
                conn.close()

    def _warn_left_open(self) -> None:
        left = sum(1 for conn in self._opened if conn._jobline_release.pending)
        if left:
            log.warning("handler.connections_left_open", extra={"job_id": self.job_id, "function": self.function,
                                                                 "count": left, "fix": "use `with ctx.connect() as "
                                                                 "conn:` (or async with), which closes it"})

    def require_store(self) -> Store:
        """The store, or a JoblineError when the job runs in a remote worker (no database)."""
        if self.store is None:
            raise JoblineError(f"job {self.job_id} ({self.function}) runs in a remote worker, which has no "
                               "database connection: run this function in a worker connected to the database, "
                               "or pass what it needs in the payload")
        return self.store
