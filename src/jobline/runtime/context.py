"""JobContext: what a handler may know about the job it runs, and a way into the database."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from ..db.store import Store


@dataclasses.dataclass(frozen=True)
class JobContext:
    job_id: int
    attempt: int
    max_attempts: int
    function: str
    queue: str
    owner: str | None
    worker_id: str
    store: Store = dataclasses.field(repr=False)

    @property
    def database_url(self) -> str:
        return self.store.url

    def connect(self) -> psycopg.Connection:
        """A new sync connection to jobline's database (use it as a context manager)."""
        return psycopg.connect(self.store.url)

    async def connect_async(self) -> psycopg.AsyncConnection:
        """A new async connection to jobline's database (use it as an async context manager)."""
        return await psycopg.AsyncConnection.connect(self.store.url)
