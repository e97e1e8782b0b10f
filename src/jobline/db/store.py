"""Store: the async data-access API, and the only code that executes jobline's SQL.

Every method is named after its query file (``job_claim_many`` runs ``queries/job_claim_many.sql``).
psycopg errors are translated here, and only here, into jobline's error types.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool

from ..errors import Conflict, DatabaseError, InvalidInput, JobNotFound
from ..job import Attempt, Batch, Job, NewJob
from . import queries as q

log = logging.getLogger(__name__)

LISTEN_CHANNEL = "jobline_jobs"


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn psycopg errors into jobline errors with the server's message (cause kept)."""
    try:
        yield
    except (pg_errors.InvalidParameterValue, pg_errors.CheckViolation, pg_errors.ForeignKeyViolation,
            pg_errors.InvalidTextRepresentation, pg_errors.NumericValueOutOfRange,
            pg_errors.UntranslatableCharacter, pg_errors.DatetimeFieldOverflow) as exc:
        raise InvalidInput(_server_message(exc)) from exc
    except pg_errors.UndefinedTable as exc:
        raise DatabaseError(f"{_server_message(exc)}; is the schema installed? Run `jobline db migrate`") from exc
    except psycopg.Error as exc:
        raise DatabaseError(_server_message(exc)) from exc


def _server_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc).strip()
    hint = diag.message_hint if diag is not None else None
    return f"{message} ({hint})" if hint else message


def insert_params(new: NewJob) -> dict[str, Any]:
    return {
        "function": new.function,
        "payload": new.payload_json,
        "run_at": new.run_at,
        "queue": new.queue,
        "priority": new.priority,
        "owner": new.owner,
        "max_attempts": new.max_attempts,
        "depends_on": list(new.depends_on) or None,
        "unique_key": new.unique_key,
    }


def group_params(template: NewJob, payloads: list[str]) -> dict[str, Any]:
    return {**insert_params(template), "payloads": payloads}


class Store:
    """Async access to one jobline database through a connection pool."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, synchronous_commit: bool = True,
                 prepared_statements: bool = True):
        self.url = url
        # Server-side prepared statements (psycopg prepares a query on its 5th use) do not survive
        # a transaction-mode pooler that hands each transaction another server connection.
        connect_kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 5 if prepared_statements else None}
        if not synchronous_commit:
            connect_kwargs["options"] = "-c synchronous_commit=off"
        self._pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, kwargs=connect_kwargs,
                                         open=False, name="jobline")

    async def open(self) -> None:
        with translate_errors():
            await self._pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection from the pool (autocommit)."""
        with translate_errors():
            async with self._pool.connection() as pooled:
                yield pooled

    async def connect_listener(self) -> psycopg.AsyncConnection:
        """A dedicated connection (outside the pool) that LISTENs for new jobs."""
        with translate_errors():
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
            await conn.execute(f"LISTEN {LISTEN_CHANNEL}")
            return conn

    async def _fetch(self, query: str, params: dict | None = None, *, rows=dict_row,
                     prepare: bool | None = None) -> list:
        async with self.connection() as c:
            with translate_errors():
                cur = c.cursor(row_factory=rows)
                await cur.execute(query, params, prepare=prepare)
                return await cur.fetchall() if cur.description else []

    # -- enqueue ----------------------------------------------------------------------------

    async def job_insert(self, new: NewJob) -> Job:
        async with self.connection() as c:
            return await job_insert_on(c, new)

    async def job_insert_many(self, batch: Batch) -> list[int]:
        """Enqueue a validated batch in one transaction; returns the ids in the caller's order."""
        async with self.connection() as c:
            return await job_insert_many_on(c, batch)

    # -- the hot path ------------------------------------------------------------------------

    async def job_claim_many(self, *, worker_id: str, functions: list[str], queues: list[str] | None,
                             limit: int, lease_seconds: float) -> list[tuple]:
        """Claimed jobs as tuples (id, function, payload, attempts, max_attempts, queue, owner)."""
        params = {"worker_id": worker_id, "functions": functions, "queues": queues,
                  "limit": limit, "lease_seconds": lease_seconds}
        return await self._fetch(q.JOB_CLAIM_MANY, params, rows=tuple_row)

    async def job_complete_many(self, worker_id: str, outcomes: dict[str, list]) -> list[tuple[int, str]]:
        """Record outcomes (parallel lists keyed as in job_complete_many.sql) and settle the
        dependants of the jobs that reached a final state; returns (id, status) of jobs updated."""
        # Never prepared: PostgreSQL's generic plan for this statement is several times slower
        # than a custom plan (it cannot see the batch size).
        return await self._fetch(q.JOB_COMPLETE_MANY, {"worker_id": worker_id, **outcomes}, rows=tuple_row,
                                 prepare=False)

    @staticmethod
    async def _settle(cur: psycopg.AsyncCursor, done: Sequence[tuple[int, str]]) -> None:
        succeeded = [i for i, status in done if status == "succeeded"]
        failed = [i for i, status in done if status in ("failed", "cancelled")]
        if succeeded or failed:
            await cur.execute(q.JOB_SETTLE_DEPENDANTS, {"succeeded_ids": succeeded, "failed_ids": failed})

    async def job_extend_leases(self, *, worker_id: str, ids: list[int], lease_seconds: float) -> set[int]:
        rows = await self._fetch(q.JOB_EXTEND_LEASES, {"worker_id": worker_id, "ids": ids,
                                                       "lease_seconds": lease_seconds}, rows=tuple_row)
        return {row[0] for row in rows}

    async def job_hand_back_many(self, *, worker_id: str, ids: list[int]) -> int:
        rows = await self._fetch(q.JOB_HAND_BACK_MANY, {"worker_id": worker_id, "ids": ids})
        return len(rows)

    # -- maintenance -------------------------------------------------------------------------

    async def job_rescue_expired(self, *, limit: int = 1000) -> list[tuple[int, str]]:
        async with self.connection() as c:
            with translate_errors():
                async with c.transaction():
                    cur = c.cursor()
                    await cur.execute(q.JOB_RESCUE_EXPIRED, {"limit": limit})
                    rescued = [(row[0], row[1]) for row in await cur.fetchall()]
                    await self._settle(cur, rescued)
        return rescued

    async def job_prune_finished(self, *, succeeded_seconds: float, failed_seconds: float,
                                 cancelled_seconds: float, limit: int = 5000) -> int:
        async with self.connection() as c:
            with translate_errors():
                cur = await c.execute(q.JOB_PRUNE_FINISHED, {
                    "succeeded_seconds": succeeded_seconds, "failed_seconds": failed_seconds,
                    "cancelled_seconds": cancelled_seconds, "limit": limit})
                return (await cur.fetchone())[0]

    async def worker_register(self, *, id: str, hostname: str, pid: int, functions: list[str],
                              queues: list[str] | None) -> None:
        await self._fetch(q.WORKER_REGISTER, {"id": id, "hostname": hostname, "pid": pid,
                                              "functions": functions, "queues": queues or []})

    async def worker_unregister(self, id: str) -> None:
        await self._fetch(q.WORKER_UNREGISTER, {"id": id})

    async def worker_prune_dead(self, dead_seconds: float) -> None:
        await self._fetch(q.WORKER_PRUNE_DEAD, {"dead_seconds": dead_seconds})

    # -- reading and steering jobs -----------------------------------------------------------

    async def job_get(self, job_id: int) -> Job:
        rows = await self._fetch(q.JOB_GET, {"id": job_id})
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        return Job.from_row(rows[0])

    async def job_list(self, *, statuses: list[str] | None = None, function: str | None = None,
                       queue: str | None = None, owner: str | None = None, before_id: int | None = None,
                       include_archived: bool = False, limit: int = 50,
                       live_seconds: float = 90) -> list[tuple[Job, bool]]:
        """Jobs newest first, each with whether a live worker serves its function."""
        rows = await self._fetch(q.JOB_LIST, {
            "statuses": statuses, "function": function, "queue": queue, "owner": owner,
            "before_id": before_id, "include_archived": include_archived, "limit": limit,
            "live_seconds": live_seconds})
        return [(Job.from_row(row), row["served"]) for row in rows]

    async def attempt_list(self, job_id: int) -> list[Attempt]:
        rows = await self._fetch(q.ATTEMPT_LIST, {"job_id": job_id})
        return [Attempt(**row) for row in rows]

    async def _steer(self, query: str, job_id: int, action: str, allowed: str, **params) -> Job:
        async with self.connection() as c:
            with translate_errors():
                async with c.transaction():
                    cur = c.cursor(row_factory=dict_row)
                    await cur.execute(query, {"id": job_id, **params})
                    row = await cur.fetchone()
                    if row is None:
                        current = await self.job_get(job_id)  # raises JobNotFound
                        raise Conflict(f"cannot {action} job {job_id}: it is {current.status}; "
                                       f"only {allowed} jobs can be")
                    job = Job.from_row(row)
                    if job.status == "cancelled":
                        await self._settle(cur, [(job.id, job.status)])
        return job

    async def job_retry(self, job_id: int) -> Job:
        return await self._steer(q.JOB_RETRY, job_id, "retry", "failed or cancelled")

    async def job_cancel(self, job_id: int, reason: str | None = None) -> Job:
        return await self._steer(q.JOB_CANCEL, job_id, "cancel", "waiting, pending or running", reason=reason)

    async def job_run_now(self, job_id: int) -> Job:
        return await self._steer(q.JOB_RUN_NOW, job_id, "run now", "pending")

    async def job_archive(self, job_id: int) -> Job:
        return await self._steer(q.JOB_ARCHIVE, job_id, "archive", "finished")

    async def function_list(self, live_seconds: float = 90) -> list[dict]:
        return await self._fetch(q.FUNCTION_LIST, {"live_seconds": live_seconds})

    async def sql_run(self, command: str, *, timeout: float | None = None, max_rows: int = 100) -> dict:
        """Run a user's SQL (the built-in ``sql`` function; one or more statements) in its own
        transaction; returns the last statement's status and up to ``max_rows`` of its rows."""
        async with self.connection() as c:
            with translate_errors():
                async with c.transaction():
                    cur = c.cursor()
                    if timeout:
                        await cur.execute("SELECT set_config('statement_timeout', %s, true)",
                                          [f"{int(timeout * 1000)}ms"])
                    await cur.execute(command.encode())  # bytes: psycopg sends it verbatim
                    while cur.nextset():  # several statements: report the last, as psql's -c does
                        pass
                    rows = await cur.fetchmany(max_rows) if cur.description else []
                    return {"status": cur.statusmessage, "rowcount": cur.rowcount,
                            "rows": [list(r) for r in rows]}


# -- enqueue on a given connection: the pool's, or the caller's own transaction ------------
# The async and sync forms differ only in awaiting; the statements and parameters are shared.


async def job_insert_on(conn: psycopg.AsyncConnection, new: NewJob) -> Job:
    with translate_errors():
        cur = conn.cursor(row_factory=dict_row)
        if new.is_simple:
            await cur.execute(q.JOB_INSERT, insert_params(new))
            return new.stored(**await cur.fetchone())
        await cur.execute(q.JOB_ENQUEUE, insert_params(new))
        await cur.execute(q.JOB_GET, {"id": next(iter((await cur.fetchone()).values()))})
        return Job.from_row(await cur.fetchone())


async def job_insert_many_on(conn: psycopg.AsyncConnection, batch: Batch) -> list[int]:
    """One transaction, one round trip (pipeline mode): an INSERT per group of alike jobs, and
    jobline.enqueue() for each job with dependencies or a unique key, in order."""
    ids: list[int] = [0] * batch.size
    with translate_errors():
        async with conn.pipeline(), conn.transaction():
            groups, singles = [], []
            for template, payloads, positions in batch.groups.values():
                groups.append((positions, cur := conn.cursor()))
                await cur.execute(q.JOB_INSERT_MANY, group_params(template, payloads))
            for position, new in batch.singles:
                singles.append((position, cur := conn.cursor()))
                await cur.execute(q.JOB_INSERT if new.is_simple else q.JOB_ENQUEUE, insert_params(new))
        for positions, cur in groups:
            _place(ids, positions, await cur.fetchall())
        for position, cur in singles:
            ids[position] = (await cur.fetchone())[0]
    return ids


def _place(ids: list[int], positions: list[int], rows: list[tuple]) -> None:
    # Ids grow in insertion order, and job_insert_many inserts in payload order.
    for position, job_id in zip(positions, sorted(row[0] for row in rows)):
        ids[position] = job_id



def job_insert_sync(conn: psycopg.Connection, new: NewJob) -> Job:
    with translate_errors():
        cur = conn.cursor(row_factory=dict_row)
        if new.is_simple:
            cur.execute(q.JOB_INSERT, insert_params(new))
            return new.stored(**cur.fetchone())
        cur.execute(q.JOB_ENQUEUE, insert_params(new))
        cur.execute(q.JOB_GET, {"id": next(iter(cur.fetchone().values()))})
        return Job.from_row(cur.fetchone())


def job_insert_many_sync(conn: psycopg.Connection, batch: Batch) -> list[int]:
    """The sync twin of job_insert_many_on, for the caller's own psycopg.Connection."""
    ids: list[int] = [0] * batch.size
    with translate_errors():
        with conn.pipeline(), conn.transaction():
            groups, singles = [], []
            for template, payloads, positions in batch.groups.values():
                groups.append((positions, cur := conn.cursor()))
                cur.execute(q.JOB_INSERT_MANY, group_params(template, payloads))
            for position, new in batch.singles:
                singles.append((position, cur := conn.cursor()))
                cur.execute(q.JOB_INSERT if new.is_simple else q.JOB_ENQUEUE, insert_params(new))
        for positions, cur in groups:
            _place(ids, positions, cur.fetchall())
        for position, cur in singles:
            ids[position] = cur.fetchone()[0]
    return ids
