"""Store: the async data-access API, and the only code that executes jobline's SQL.

Every method is named after its query file (``job_claim_many`` runs ``queries/job_claim_many.sql``).
psycopg errors are translated here, and only here, into jobline's error types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .. import tracing
from ..errors import (Conflict, DatabaseError, Forbidden, InvalidInput, JobNotFound, NotFound, PipelineNotFound,
                      ScheduleNotFound, SecretNotFound)
from ..job import Attempt, Batch, Job, NewJob
from ..limit import LimitSpec
from ..schedule import Plan, Schedule, ScheduleRun, ScheduleSpec, name_seen_by, owned_name
from . import queries as q

log = logging.getLogger(__name__)

JOBS_CHANNEL = "jobline_jobs"             # jobs became due: wakes producers
SCHEDULES_CHANNEL = "jobline_schedules"   # a schedule is new or changed: wakes schedulers


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn psycopg errors into jobline errors with the server's message (cause kept)."""
    try:
        yield
    except (psycopg.DataError, pg_errors.CheckViolation, pg_errors.ForeignKeyViolation) as exc:
        # DataError: SQLSTATE class 22 (a value PostgreSQL refuses), or psycopg refusing to send
        # one (a NUL in a string).
        raise InvalidInput(_server_message(exc)) from exc
    except pg_errors.UndefinedTable as exc:
        message = _server_message(exc)
        if 'relation "jobline.' in message:  # ours; a table of the user's own SQL is theirs to fix
            message += "; is the schema installed? Run `jobline db migrate`"
        raise DatabaseError(message) from exc
    except psycopg.Error as exc:
        raise DatabaseError(_server_message(exc)) from exc


def _server_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc).strip()
    hint = diag.message_hint if diag is not None else None
    return f"{message} ({hint})" if hint else message


def insert_params(new: NewJob, trace_context: str | None = None) -> dict[str, Any]:
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
        "concurrency_key": new.concurrency_key,
        "trace_context": trace_context,  # jobline.enqueue() (dependencies, unique keys) leaves it NULL
    }


def limit_params(spec: LimitSpec) -> dict[str, Any]:
    return {"scope": spec.scope, "target": spec.target, "per_key": spec.per_key, "concurrency": spec.concurrency,
            "rate_count": spec.rate_count, "rate_seconds": spec.rate_seconds}


def group_params(template: NewJob, payloads: list[str], trace_context: str | None = None) -> dict[str, Any]:
    return {**insert_params(template, trace_context), "payloads": payloads}


def schedule_params(spec: ScheduleSpec) -> dict[str, Any]:
    return {"name": spec.name, "expression": spec.expression, "timezone": spec.timezone,
            "function": spec.function, "payload": spec.payload_json, "owner": spec.owner, "queue": spec.queue,
            "priority": spec.priority, "max_attempts": spec.max_attempts, "overlap": spec.overlap,
            "catch_up": spec.catch_up, "catch_up_max": spec.catch_up_max, "active": spec.active,
            "max_consecutive_failures": spec.max_consecutive_failures}


# schedule_reconcile_many takes one array per column.
_RECONCILE_COLUMNS = {"name": "names", "expression": "expressions", "timezone": "timezones",
                      "function": "functions", "payload": "payloads", "owner": "owners", "queue": "queues",
                      "priority": "priorities", "max_attempts": "max_attempts", "overlap": "overlaps",
                      "catch_up": "catch_ups", "catch_up_max": "catch_up_maxes",
                      "max_consecutive_failures": "max_consecutive_failures"}


# How long psycopg_pool keeps one reconnection attempt going before giving up on it: it tries
# again after 1 s, then after what is left of this window (its delays double from 1 s, capped by
# the window), then calls reconnect_failed, where _reconnect_again starts a new attempt at once.
# So while the database is away it is tried about every second, however long the outage lasts.
# psycopg_pool's default (300 s) lets the delays double to 64 s, 128 s...: the time to notice that
# PostgreSQL is back grew with the outage (27.9 s after a 30 s one). Measured in
# docs/concepts/reliability.md; tests/e2e/test_recovery.py keeps it.
RECONNECT_WINDOW_SECONDS = 2.0


async def _reconnect_again(pool: AsyncConnectionPool) -> None:
    """The pool's reconnect_failed hook: one reconnection attempt ran out its window. check()
    refills a pool that lost its connections (documented since psycopg_pool 3.1.5) by starting
    a new attempt, whose delays start again from 1 s."""
    if not pool.closed:
        await pool.check()


class Store:
    """Async access to one jobline database through a connection pool.

    ``timeout`` is how long a caller waits for a connection (JOBLINE_POOL_TIMEOUT) before a
    DatabaseError: every connection is in use, or the database is unreachable. ``listen_url``
    is where connect_listener() connects (JOBLINE_LISTEN_DATABASE_URL; default ``url``).
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4, synchronous_commit: bool = True,
                 prepared_statements: bool = True, timeout: float = 30.0, listen_url: str | None = None):
        self.url = url
        self.listen_url = listen_url or url
        self.timeout = timeout
        self._checking: asyncio.Future | None = None
        # Server-side prepared statements (psycopg prepares a query on its 5th use) do not survive
        # a transaction-mode pooler that hands each transaction another server connection.
        connect_kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": 5 if prepared_statements else None}
        if not synchronous_commit:
            connect_kwargs["options"] = "-c synchronous_commit=off"
        self._pool = AsyncConnectionPool(url, min_size=min_size, max_size=max_size, kwargs=connect_kwargs,
                                         open=False, name="jobline", timeout=timeout,
                                         reconnect_timeout=RECONNECT_WINDOW_SECONDS,
                                         reconnect_failed=_reconnect_again)

    async def open(self) -> None:
        with translate_errors():
            await self._pool.open(wait=True, timeout=15)

    async def close(self) -> None:
        if self._checking is not None:
            await asyncio.wait({self._checking}, timeout=5)  # quick: each idle connection answers or fails
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection from the pool (autocommit)."""
        with translate_errors():
            try:
                async with self._pool.connection() as pooled:
                    try:
                        yield pooled
                    finally:
                        if pooled.broken:
                            self._check_soon()
            except PoolTimeout as exc:
                raise DatabaseError(f"no database connection within {self.timeout:g} s (JOBLINE_POOL_TIMEOUT): "
                                    f"the database is unreachable, or all {self._pool.max_size} connections of "
                                    "this pool are in use") from exc

    def _check_soon(self) -> None:
        """A connection broke (the server restarted, or its backend was terminated): its idle
        siblings are most likely dead too. Test them all now, in the background, and replace the
        dead ones, rather than let each caller find one, fail and pause in turn."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.ensure_future(self._pool.check())
            # check() handles connection errors itself; anything else is retrieved (and dropped)
            # here rather than reported as "never retrieved" when the loop closes.
            self._checking.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def connect_listener(self, channels: Sequence[str]) -> psycopg.AsyncConnection:
        """A dedicated connection (outside the pool, to ``listen_url``) that LISTENs on ``channels``.
        Nothing on it is ever prepared: it runs one statement every few seconds, and if it goes
        through a transaction-mode pooler by mistake, a prepared statement would break it."""
        with translate_errors():
            conn = await psycopg.AsyncConnection.connect(self.listen_url, autocommit=True, prepare_threshold=None)
            try:
                for channel in channels:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            except BaseException:
                await conn.close()
                raise
            return conn

    async def listener_probe_send(self, channel: str) -> None:
        """NOTIFY ``channel`` through the pool: the listener checks that it hears it."""
        await self._fetch(q.LISTENER_PROBE_SEND, {"channel": channel}, prepare=False)

    async def _fetch(self, query: str | sql.Composable, params: dict | None = None, *, rows=dict_row,
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
        """Claimed jobs as tuples (id, function, payload, attempts, max_attempts, queue, owner,
        trace_context, upstream): positional, read so by runtime/ (producer, executor, metrics);
        upstream is a pipeline step's upstream results (0021), None for other jobs."""
        params = {"worker_id": worker_id, "functions": functions, "queues": queues,
                  "limit": limit, "lease_seconds": lease_seconds}
        return await self._fetch(q.JOB_CLAIM_MANY, params, rows=tuple_row)

    async def job_claim_one(self, job_id: int, *, worker_id: str, lease_seconds: float) -> tuple | None:
        """Lease the pending job ``job_id`` whatever its run_at or queue (see the query); None when
        it is not pending. The tuple is as job_claim_many's."""
        rows = await self._fetch(q.JOB_CLAIM_ONE, {"id": job_id, "worker_id": worker_id,
                                                   "lease_seconds": lease_seconds}, rows=tuple_row)
        return rows[0] if rows else None

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

    async def job_rescue_expired(self, *, limit: int = 1000) -> list[tuple[int, str, str, str]]:
        """(id, new status, function, queue) of the jobs taken back."""
        async with self.connection() as c:
            with translate_errors():
                async with c.transaction():
                    cur = c.cursor()
                    await cur.execute(q.JOB_RESCUE_EXPIRED, {"limit": limit})
                    rescued = [(row[0], row[1], row[2], row[3]) for row in await cur.fetchall()]
                    await self._settle(cur, [(job_id, status) for job_id, status, _, _ in rescued])
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

    # -- table upkeep (0022_table_upkeep.sql) ---------------------------------------------------

    async def upkeep_claim(self, every_seconds: float) -> bool:
        """Whether this caller takes this round of upkeep (at most one per ``every_seconds``)."""
        return bool(await self._fetch(q.UPKEEP_CLAIM, {"every_seconds": every_seconds}))

    async def table_upkeep_list(self, tables: Sequence[str]) -> list[dict]:
        return await self._fetch(q.TABLE_UPKEEP_LIST, {"tables": list(tables)})

    async def index_upkeep_list(self) -> list[dict]:
        return await self._fetch(q.INDEX_UPKEEP_LIST)

    async def table_vacuum(self, table: str) -> None:
        await self._fetch(sql.SQL(q.TABLE_VACUUM).format(table=sql.Identifier(table)), prepare=False)

    async def index_rebuild(self, index: str) -> None:
        await self._fetch(sql.SQL(q.INDEX_REBUILD).format(index=sql.Identifier(index)), prepare=False)

    async def index_drop(self, index: str) -> None:
        await self._fetch(sql.SQL(q.INDEX_DROP).format(index=sql.Identifier(index)), prepare=False)

    # -- paused queues (0016_queue_pauses.sql) ---------------------------------------------------

    async def queue_pause(self, queue: str, reason: str | None = None) -> dict:
        return (await self._fetch(q.QUEUE_PAUSE, {"queue": queue, "reason": reason}))[0]

    async def queue_resume(self, queue: str) -> bool:
        """Whether ``queue`` was paused."""
        return bool(await self._fetch(q.QUEUE_RESUME, {"queue": queue}))

    async def queue_pause_list(self) -> list[dict]:
        return await self._fetch(q.QUEUE_PAUSE_LIST)

    async def queue_exemption_prune(self) -> None:
        await self._fetch(q.QUEUE_EXEMPTION_PRUNE)

    # -- notifications (0020_notifications.sql) ---------------------------------------------------

    async def notification_record(self, kind: str, owner: str | None, subject: str | None, data_json: str) -> int:
        """Record an event and queue its deliveries (jobline.record_event); its id."""
        return (await self._fetch(q.NOTIFICATION_RECORD, {"kind": kind, "owner": owner, "subject": subject,
                                                          "data": data_json}, rows=tuple_row))[0][0]

    async def notification_list(self, *, owner: str | None = None, kind: str | None = None, since: Any = None,
                                before_id: int | None = None, limit: int = 50) -> list[dict]:
        return await self._fetch(q.NOTIFICATION_LIST, {"owner": owner, "kind": kind, "since": since,
                                                       "before_id": before_id, "limit": limit}, prepare=False)

    async def notification_prune(self, *, seconds: float, limit: int = 5000) -> int:
        async with self.connection() as c:
            with translate_errors():
                cur = await c.execute(q.NOTIFICATION_PRUNE, {"seconds": seconds, "limit": limit})
                return cur.rowcount

    async def subscription_insert(self, *, owner: str | None, url: str, events: list[str] | None, headers_json: str,
                                  max_per_owner: int) -> dict | None:
        """The new subscription; None when ``owner`` already has ``max_per_owner``."""
        rows = await self._fetch(q.SUBSCRIPTION_INSERT, {"owner": owner, "url": url, "events": events,
                                                         "headers": headers_json, "max_per_owner": max_per_owner})
        return rows[0] if rows else None

    async def subscription_list(self, *, owner: str | None = None, every_owner: bool = False) -> list[dict]:
        return await self._fetch(q.SUBSCRIPTION_LIST, {"owner": owner, "every_owner": every_owner})

    async def subscription_delete(self, subscription_id: int, *, owner: str | None = None,
                                  every_owner: bool = False) -> dict | None:
        rows = await self._fetch(q.SUBSCRIPTION_DELETE, {"id": subscription_id, "owner": owner,
                                                         "every_owner": every_owner})
        return rows[0] if rows else None

    async def alert_setting_update(self, *, failures: int, window_seconds: float) -> None:
        await self._fetch(q.ALERT_SETTING_UPDATE, {"failures": failures, "window_seconds": window_seconds})

    # -- reading and steering jobs -----------------------------------------------------------

    async def job_get(self, job_id: int, *, owner: str | None = None) -> Job:
        """A job; with ``owner``, only that user's (another's answers as one that does not exist)."""
        rows = await self._fetch(q.JOB_GET, {"id": job_id, "owner": owner})
        if not rows:
            raise JobNotFound(f"no job with id {job_id}")
        return Job.from_row(rows[0])

    async def job_list(self, *, statuses: list[str] | None = None, function: str | None = None,
                       queue: str | None = None, owner: str | None = None, before_id: int | None = None,
                       created_after: Any = None, created_before: Any = None,
                       include_archived: bool = False, limit: int = 50,
                       live_seconds: float = 90, error: str | None = None) -> list[tuple[Job, bool]]:
        """Jobs newest first, each with whether a live worker serves its function; with
        ``error``, only those whose last error holds that text (job_list_by_error)."""
        query = q.JOB_LIST if error is None else q.JOB_LIST_BY_ERROR
        # The error filter is never prepared: its custom plan walks jobs_error_idx.
        rows = await self._fetch(query, {"error": error, 
            "statuses": statuses, "function": function, "queue": queue, "owner": owner,
            "created_after": created_after, "created_before": created_before, "before_id": before_id, "include_archived": include_archived, "limit": limit,
            "live_seconds": live_seconds}, prepare=False if error is not None else None)
        return [(Job.from_row(row), row["served"]) for row in rows]

    async def attempt_list(self, job_id: int, *, owner: str | None = None) -> list[Attempt]:
        """A job's attempts; with ``owner``, none unless that user owns the job."""
        rows = await self._fetch(q.ATTEMPT_LIST, {"job_id": job_id, "owner": owner})
        return [Attempt(**row) for row in rows]

    async def _steer(self, query: str, job_id: int, action: str, allowed: str, *, owner: str | None,
                     **params) -> Job:
        async with self.connection() as c:
            with translate_errors():
                async with c.transaction():
                    cur = c.cursor(row_factory=dict_row)
                    await cur.execute(query, {"id": job_id, "owner": owner, **params})
                    row = await cur.fetchone()
                    if row is None:
                        current = await self.job_get(job_id, owner=owner)  # raises JobNotFound
                        raise Conflict(f"cannot {action} job {job_id}: it is {current.status}; "
                                       f"only {allowed} jobs can be")
                    job = Job.from_row(row)
                    if job.status == "cancelled":
                        await self._settle(cur, [(job.id, job.status)])
        return job

    # Steering: with ``owner``, only that user's jobs (others answer as jobs that do not exist).

    async def job_retry(self, job_id: int, *, owner: str | None = None) -> Job:
        return await self._steer(q.JOB_RETRY, job_id, "retry", "failed or cancelled", owner=owner)

    async def job_cancel(self, job_id: int, reason: str | None = None, *, owner: str | None = None) -> Job:
        return await self._steer(q.JOB_CANCEL, job_id, "cancel", "waiting, pending or running", owner=owner,
                                 reason=reason)

    async def job_run_now(self, job_id: int, *, owner: str | None = None, past_pause: bool = False) -> Job:
        return await self._steer(q.JOB_RUN_NOW, job_id, "run now", "pending", owner=owner, past_pause=past_pause)

    async def job_archive(self, job_id: int, *, owner: str | None = None) -> Job:
        return await self._steer(q.JOB_ARCHIVE, job_id, "archive", "finished", owner=owner)

    async def function_list(self, live_seconds: float = 90) -> list[dict]:
        return await self._fetch(q.FUNCTION_LIST, {"live_seconds": live_seconds})

    # -- flow control: limits (0019_flow_control.sql) ---------------------------------------------

    async def limit_list(self, *, owner: str | None = None) -> list[dict]:
        """Every limit; with ``owner``, those on a function or queue of that user's jobs."""
        return await self._fetch(q.LIMIT_LIST, {"owner": owner})

    async def limit_upsert(self, spec: LimitSpec) -> dict:
        """Set (add or replace) the limit ``spec`` as an operator's; returns its row."""
        return (await self._fetch(q.LIMIT_UPSERT, limit_params(spec)))[0]

    async def limit_delete(self, scope: str, target: str, per_key: bool) -> dict | None:
        rows = await self._fetch(q.LIMIT_DELETE, {"scope": scope, "target": target, "per_key": per_key})
        return rows[0] if rows else None

    async def limit_reconcile_many(self, specs: Sequence[LimitSpec], owned_functions: Sequence[str],
                                   owned_queues: Sequence[str]) -> list[tuple[str, str, bool, str]]:
        """Make the code limits match ``specs``; returns (scope, target, per_key, change) rows."""
        params = {"scopes": [s.scope for s in specs], "targets": [s.target for s in specs],
                  "per_keys": [s.per_key for s in specs], "concurrencies": [s.concurrency for s in specs],
                  "rate_counts": [s.rate_count for s in specs], "rate_seconds": [s.rate_seconds for s in specs],
                  "owned_functions": list(owned_functions), "owned_queues": list(owned_queues)}
        return await self._fetch(q.LIMIT_RECONCILE_MANY, params, rows=tuple_row, prepare=False)

    async def limit_wait(self, *, functions: list[str], queues: list[str] | None) -> float | None:
        """Seconds until a job held back by a full limit may be admitted (inf: when a job
        finishes); None when no limit in this scope is full."""
        rows = await self._fetch(q.LIMIT_WAIT, {"functions": functions, "queues": queues}, rows=tuple_row)
        return rows[0][0]

    async def limit_start_prune(self) -> int:
        async with self.connection() as c:
            with translate_errors():
                cur = await c.execute(q.LIMIT_START_PRUNE)
                return cur.rowcount

    # -- pipelines (0021_pipelines.sql) -------------------------------------------------------------

    async def pipeline_upsert_many(self, names: Sequence[str], steps: Sequence[str]) -> list[str]:
        """Record declared pipelines (steps as JSON text); returns the names new or changed."""
        rows = await self._fetch(q.PIPELINE_UPSERT_MANY, {"names": list(names), "steps": list(steps)})
        return [row["name"] for row in rows]

    async def pipeline_list(self, *, owner: str | None = None) -> list[dict]:
        return await self._fetch(q.PIPELINE_LIST, {"owner": owner})

    async def pipeline_start(self, name: str, payload: str, *, owner: str | None = None,
                             parent: int | None = None) -> int:
        """Start a run (payload as JSON text), as a child of job ``parent`` if given (a schedule's
        tick); PipelineNotFound when no pipeline has that name."""
        async with self.connection() as c:
            return await pipeline_start_on(c, name, payload, owner, parent)

    async def pipeline_run_get(self, run_id: int, *, owner: str | None = None) -> dict:
        rows = await self._fetch(q.PIPELINE_RUN_GET, {"id": run_id, "owner": owner})
        if not rows:
            raise PipelineNotFound(f"no pipeline run with id {run_id}")
        return rows[0]

    async def pipeline_run_list(self, *, owner: str | None = None, pipeline: str | None = None,
                                status: str | None = None, before_id: int | None = None, limit: int = 50) -> list[dict]:
        return await self._fetch(q.PIPELINE_RUN_LIST, {"owner": owner, "pipeline": pipeline, "status": status,
                                                       "before_id": before_id, "limit": limit})

    async def pipeline_run_steps(self, run_id: int) -> list[dict]:
        return await self._fetch(q.PIPELINE_RUN_STEPS, {"id": run_id})

    async def pipeline_history_list(self, run_id: int, *, limit: int = 1000) -> list[dict]:
        return await self._fetch(q.PIPELINE_HISTORY_LIST, {"id": run_id, "limit": limit})

    async def pipeline_run_cancel(self, run_id: int, reason: str | None = None) -> int:
        return (await self._fetch(q.PIPELINE_RUN_CANCEL, {"id": run_id, "reason": reason}))[0]["cancelled"]

    async def pipeline_run_prune(self, *, seconds: float, limit: int = 5000) -> None:
        await self._fetch(q.PIPELINE_RUN_PRUNE, {"seconds": seconds, "limit": limit})

    async def pipeline_run_retry(self, run_id: int) -> int:
        return (await self._fetch(q.PIPELINE_RUN_RETRY, {"id": run_id}))[0]["steps"]

    # -- remote tasks: claim-next-task and its reports (see tasks.py) -----------------------------

    async def task_claim_many(self, *, worker_id: str, owner: str | None, task_types: list[str] | None,
                              limit: int, lease_seconds: float) -> list[dict]:
        """Lease up to ``limit`` claimable jobs (see the query), in claim order. Under
        flow-control limits, in one transaction: lock the limits that apply (limit_take), then
        claim with a snapshot taken after the lock (task_claim_many_limited; 0019 says why)."""
        params = {"worker_id": worker_id, "owner": owner, "task_types": task_types, "limit": limit,
                  "lease_seconds": lease_seconds}
        async with self.connection() as c:
            with translate_errors():
                async with c.transaction():
                    cur = c.cursor(row_factory=dict_row)
                    await cur.execute(q.LIMIT_TAKE, {"task_types": task_types})
                    limit_ids = (await cur.fetchone())["limit_ids"]
                    if limit_ids is None:
                        await cur.execute(q.TASK_CLAIM_MANY, params)
                    else:
                        await cur.execute(q.TASK_CLAIM_MANY_LIMITED, {**params, "limit_ids": limit_ids})
                    return await cur.fetchall()

    async def task_hold(self, job_id: int, *, worker_id: str, owner: str | None) -> dict | None:
        """The attempt of job ``job_id`` that lease ``worker_id`` holds, if it still does."""
        rows = await self._fetch(q.TASK_HOLD, {"id": job_id, "worker_id": worker_id, "owner": owner})
        return rows[0] if rows else None

    async def task_hold_many(self, ids: list[int], *, worker_id: str, owner: str | None) -> list[dict]:
        """Of jobs ``ids``, the attempts that lease ``worker_id`` still holds."""
        return await self._fetch(q.TASK_HOLD_MANY, {"ids": ids, "worker_id": worker_id, "owner": owner})

    async def task_heartbeat(self, job_id: int, *, worker_id: str, owner: str | None, lease_seconds: float) -> Any:
        """Extend the lease; returns its new end, or None if the lease was lost."""
        rows = await self._fetch(q.TASK_HEARTBEAT, {"id": job_id, "worker_id": worker_id, "owner": owner,
                                                    "lease_seconds": lease_seconds}, rows=tuple_row)
        return rows[0][0] if rows else None

    # -- API tokens (SHA-256 only) ---------------------------------------------------------------

    async def api_token_insert(self, *, user_id: str, name: str | None, token_hash: bytes, prefix: str) -> dict:
        rows = await self._fetch(q.API_TOKEN_INSERT, {"user_id": user_id, "name": name, "token_hash": token_hash,
                                                      "prefix": prefix})
        return rows[0]

    async def api_token_list(self, user_id: str | None = None) -> list[dict]:
        return await self._fetch(q.API_TOKEN_LIST, {"user_id": user_id})

    async def api_token_revoke(self, token_id: int) -> dict:
        rows = await self._fetch(q.API_TOKEN_REVOKE, {"id": token_id})
        if not rows:
            raise NotFound(f"no API token with id {token_id}; `jobline tokens ls` lists them")
        return rows[0]

    async def api_token_use(self, token_hash: bytes) -> str | None:
        """The user of a live token with this hash (recording its use), or None."""
        rows = await self._fetch(q.API_TOKEN_USE, {"token_hash": token_hash}, rows=tuple_row)
        return rows[0][0] if rows else None

    # -- schedules ------------------------------------------------------------------------------

    async def schedule_upsert(self, spec: ScheduleSpec, *, replace: bool = False, scope: str | None = None) -> Schedule:
        """Add a run-time schedule; with ``replace``, one of the same name is replaced, and for a
        user (``scope``) only if that user owns it (a user's names are theirs: see
        schedule.owned_name)."""
        rows = await self._fetch(q.SCHEDULE_UPSERT, {**schedule_params(spec), "replace": replace, "scope": scope})
        if not rows:
            if scope is not None:
                raise Conflict(f"you already have a schedule named {name_seen_by(scope, spec.name)!r}: choose "
                               "another name, or replace it with replace")
            raise Conflict(f"the schedule name {spec.name!r} is taken (names are unique, as in pg_cron): "
                           "choose another, or replace that schedule with replace")
        return Schedule.from_row(rows[0])

    async def schedule_reconcile_many(self, specs: Sequence[ScheduleSpec], owned_functions: Sequence[str]) -> list[tuple[str, str]]:
        """Match the code-declared schedules (see the query); returns (name, change) pairs, change
        being added, updated, removed or shadowed (a run-time schedule holds the name)."""
        columns = [schedule_params(s) for s in specs]
        params = {plural: [c[key] for c in columns] for key, plural in _RECONCILE_COLUMNS.items()}
        rows = await self._fetch(q.SCHEDULE_RECONCILE_MANY, {**params, "owned_functions": list(owned_functions)},
                                 rows=tuple_row)
        return [(name, change) for name, change in rows]

    async def schedule_get(self, ref: str | int, *, owner: str | None = None) -> Schedule:
        """A schedule by name, or by id when ``ref`` is a number (a name wins); with ``owner``,
        only that user's (another's answers as one that does not exist), and a name is first
        one of the user's own (``<owner>/<ref>``, schedule.owned_name), then a global name."""
        text = str(ref)
        # ASCII digits only: str.isdigit() also accepts '²', which int() refuses.
        as_id = int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None
        owned = owned_name(owner, text) if owner is not None else None
        rows = await self._fetch(q.SCHEDULE_GET, {"ref": text, "owned": owned, "id": as_id, "owner": owner})
        if not rows:
            raise ScheduleNotFound(f"no schedule named or numbered {text!r}; `jobline cron ls` lists them")
        return Schedule.from_row(rows[0])

    async def schedule_list(self, *, owner: str | None = None) -> list[tuple[Schedule, ScheduleRun | None]]:
        """Every schedule (of ``owner``, when given), with its latest run."""
        out = []
        for row in await self._fetch(q.SCHEDULE_LIST, {"owner": owner}):
            last = None
            if row["run_id"] is not None:
                last = ScheduleRun(id=row["run_id"], schedule_id=row["id"], tick_at=row["run_tick_at"],
                                   status=row["run_status"], job_id=row["run_job_id"], message=row["run_message"],
                                   created_at=row["run_created_at"], job_status=row["run_job_status"],
                                   started_at=row["run_started_at"], finished_at=row["run_finished_at"],
                                   result=row["run_result"], last_error=row["run_last_error"])
            out.append((Schedule.from_row(row), last))
        return out

    async def schedule_delete(self, schedule_id: int, *, owner: str | None = None) -> None:
        if not await self._fetch(q.SCHEDULE_DELETE, {"id": schedule_id, "owner": owner}):
            raise ScheduleNotFound(f"no schedule with id {schedule_id}")

    async def schedule_set_active(self, schedule_id: int, active: bool, *, owner: str | None = None) -> Schedule:
        rows = await self._fetch(q.SCHEDULE_SET_ACTIVE, {"id": schedule_id, "active": active, "owner": owner})
        if not rows:
            raise ScheduleNotFound(f"no schedule with id {schedule_id}")
        return Schedule.from_row(rows[0])

    async def schedule_trigger(self, schedule_id: int, *, owner: str | None = None) -> int:
        """Run a schedule once now (outside its ticks); returns the new job's id."""
        rows = await self._fetch(q.SCHEDULE_TRIGGER, {"id": schedule_id, "owner": owner}, rows=tuple_row)
        if not rows:
            raise ScheduleNotFound(f"no schedule with id {schedule_id}")
        return rows[0][0]

    async def schedule_list_due(self, *, now: Any = None, started_at: Any = None, limit: int = 100) -> list[dict]:
        """Due schedules at ``now`` (default the database's clock), with the server's start
        (``started_at``, default pg_postmaster_start_time(); tests move both)."""
        return await self._fetch(q.SCHEDULE_LIST_DUE, {"now": now, "started_at": started_at, "limit": limit})

    async def schedule_next_due(self, *, now: Any = None) -> float | None:
        """Seconds until the next active schedule is due (negative if overdue); None if none."""
        return (await self._fetch(q.SCHEDULE_NEXT_DUE, {"now": now}, rows=tuple_row))[0][0]

    async def schedule_fire(self, due: dict, plan: Plan) -> list[tuple]:
        """Write a plan for a due row of schedule_list_due; returns (tick_at, status, job_id)
        per run written, none when another scheduler was first."""
        return await self._fetch(q.SCHEDULE_FIRE, {
            "id": due["id"], "seen_next": due["next_run_at"], "seen_changed": due["changed_at"],
            "ticks": plan.ticks, "missed_at": plan.missed_at, "missed_note": plan.missed_note,
            "next_tick": plan.next_run_at}, rows=tuple_row)

    async def schedule_disable(self, schedule_id: int, seen_changed: Any) -> None:
        await self._fetch(q.SCHEDULE_DISABLE, {"id": schedule_id, "seen_changed": seen_changed})

    async def schedule_run_list(self, schedule_id: int, *, limit: int = 20, before_id: int | None = None,
                                owner: str | None = None) -> list[ScheduleRun]:
        rows = await self._fetch(q.SCHEDULE_RUN_LIST, {"schedule_id": schedule_id, "limit": limit,
                                                       "before_id": before_id, "owner": owner})
        return [ScheduleRun.from_row(row) for row in rows]

    async def schedule_run_prune(self, *, seconds: float, limit: int = 5000) -> None:
        await self._fetch(q.SCHEDULE_RUN_PRUNE, {"seconds": seconds, "limit": limit})

    # -- secrets: sealed values only (vault.py encrypts and decrypts; see 0004_secrets.sql) -----

    async def secret_upsert(self, name: str, sealed: Any, owner: str | None = None, *,
                            max_per_owner: int) -> dict:
        """Store ``sealed`` (a vault.Sealed) as ``owner``'s secret ``name`` (None: the
        operator's); returns name, owner, key_id, created_at, updated_at and whether the name is
        new (``created``). Conflict when a user would hold more than ``max_per_owner``."""
        rows = await self._fetch(q.SECRET_UPSERT, {"name": name, "owner": owner, "key_id": sealed.key_id,
                                                   "nonce": sealed.nonce, "ciphertext": sealed.ciphertext,
                                                   "max_per_owner": max_per_owner})
        if not rows:
            raise Conflict(f"user {owner!r} already has {max_per_owner} secrets, the most a user may hold; "
                           "remove one first")
        return rows[0]

    async def secret_list(self, owner: str | None = None, *, every_owner: bool = False) -> list[dict]:
        """``owner``'s secrets (None: the operator's), or everyone's: name, owner, key_id,
        created_at and updated_at (never the ciphertext)."""
        return await self._fetch(q.SECRET_LIST, {"owner": owner, "every_owner": every_owner})

    async def secret_delete(self, name: str, owner: str | None = None) -> None:
        if not await self._fetch(q.SECRET_DELETE, {"name": name, "owner": owner}):
            whose = "" if owner is None else f" of user {owner!r}"
            raise SecretNotFound(f"no secret named {name!r}{whose}; `jobline secrets ls` lists them")

    async def secret_get_many(self, names: Sequence[str], owner: str | None = None) -> list[dict]:
        """The sealed rows (name, owner, key_id, nonce, ciphertext) of those of ``owner``'s
        secrets ``names`` that exist."""
        return await self._fetch(q.SECRET_GET_MANY, {"names": list(names), "owner": owner})

    async def secret_reseal(self, name: str, owner: str | None, old: Any, new: Any) -> bool:
        """Replace the secret's sealed value ``old`` with ``new`` (vault.Sealed both), only if
        the row still holds ``old``; True if it did."""
        return bool(await self._fetch(q.SECRET_RESEAL, {
            "name": name, "owner": owner, "old_key_id": old.key_id, "old_nonce": old.nonce,
            "key_id": new.key_id, "nonce": new.nonce, "ciphertext": new.ciphertext}))

    async def job_role_get(self, job_id: int) -> dict | None:
        """The role job ``job_id`` acts for (``username``; None for a job queued before roles
        were recorded, by the operator), whether it is jobline's operator (``operator``), and this
        store's own role (``session_role``); None when there is no such job."""
        rows = await self._fetch(q.JOB_ROLE_GET, {"id": job_id})
        return rows[0] if rows else None

    async def sql_run(self, command: str, *, job_id: int | None = None, database: str | None = None,
                      timeout: float | None = None, max_rows: int = 100) -> dict:
        """Run a user's SQL (the built-in ``sql`` function; one or more statements) in its own
        transaction, as the role job ``job_id`` acts for, in ``database`` (default jobline's);
        returns the last statement's status and up to ``max_rows`` of its rows.

        A job of this store's own role (or of none: no job, or one queued before roles were
        recorded) runs directly, on a pooled connection, as it always has. A job of another role
        runs as that role (see _run_as): on a connection of its own, closed afterwards. So does
        any command for another database, which a connection with this store's credentials
        reaches. While the command runs, ``jobline.parent_job`` names its job, and
        jobline.enqueue records it as the parent of the jobs the command queues (the run's
        status follows them: jobline.job_outcome).
        """
        role = None
        if job_id is not None:
            who = await self.job_role_get(job_id)
            if who is not None and who["username"] is not None and who["username"] != who["session_role"]:
                role = who["username"]
        settings = {"statement_timeout": f"{int(timeout * 1000)}ms" if timeout else None,
                    "jobline.parent_job": str(job_id) if job_id is not None else None}
        if role is None and database is None:
            async with self.connection() as c:
                return await _run_directly(c, command, settings, max_rows)
        with translate_errors():
            kwargs: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
            if database is not None:
                kwargs["dbname"] = database
            # Closed afterwards: whatever the command left in its session (settings, temporary
            # objects, advisory locks, prepared statements) goes with it.
            async with await psycopg.AsyncConnection.connect(self.url, **kwargs) as c:
                if role is None:
                    return await _run_directly(c, command, settings, max_rows)
                return await _run_as(c, role, command, settings)

    # -- what the HTTP API reads (api/) -------------------------------------------------------

    async def job_stats(self, *, owner: str | None = None, now: Any = None) -> dict:
        """Recent outcomes and the oldest due job's age (see the query), for ``owner`` (None:
        every owner)."""
        return (await self._fetch(q.JOB_STATS, {"owner": owner, "now": now}))[0]

    async def job_count_unarchived(self, *, owner: str | None = None) -> list[tuple[str, str, int]]:
        """(function, status, count) of every unarchived job: reads most of the table."""
        return [tuple(r) for r in await self._fetch(q.JOB_COUNT_UNARCHIVED, {"owner": owner}, rows=tuple_row)]

    async def job_filter_owned(self, ids: Sequence[int], *, owner: str) -> set[int]:
        """Those of ``ids`` that exist and belong to ``owner``."""
        rows = await self._fetch(q.JOB_FILTER_OWNED, {"ids": list(ids), "owner": owner}, rows=tuple_row)
        return {row[0] for row in rows}

    # -- the dashboard (dashboard/, through operations/activity.py and sessions.py) ---------------

    async def dashboard_session_insert(self, *, id_hash: bytes, user_id: str | None, via: str, credential: bytes,
                                       csrf_token: str, seconds: float, not_after: Any = None,
                                       now: Any = None) -> Any:
        """Store a new session (deleting expired ones); returns when it expires."""
        rows = await self._fetch(q.DASHBOARD_SESSION_INSERT, {
            "id_hash": id_hash, "user_id": user_id, "via": via, "credential": credential, "csrf_token": csrf_token,
            "seconds": seconds, "not_after": not_after, "now": now}, rows=tuple_row)
        return rows[0][0]

    async def dashboard_session_get(self, id_hash: bytes, *, now: Any = None) -> dict | None:
        """The live session with this id hash (user_id, via, credential, csrf_token, expires_at)."""
        rows = await self._fetch(q.DASHBOARD_SESSION_GET, {"id_hash": id_hash, "now": now})
        return rows[0] if rows else None

    async def dashboard_session_delete(self, id_hash: bytes) -> None:
        await self._fetch(q.DASHBOARD_SESSION_DELETE, {"id_hash": id_hash})

    async def dashboard_link_insert(self, *, token_hash: bytes, credential: bytes, seconds: float) -> Any:
        rows = await self._fetch(q.DASHBOARD_LINK_INSERT, {"token_hash": token_hash, "credential": credential,
                                                           "seconds": seconds}, rows=tuple_row)
        return rows[0][0]

    async def dashboard_link_redeem(self, token_hash: bytes) -> bytes | None:
        """The credential of the unexpired link with this token hash, deleting it (once only)."""
        rows = await self._fetch(q.DASHBOARD_LINK_REDEEM, {"token_hash": token_hash}, rows=tuple_row)
        return bytes(rows[0][0]) if rows else None

    async def job_count_live(self, *, owner: str | None = None) -> list[tuple[str, str, int]]:
        """(function, status, count) of waiting, pending and running jobs."""
        return [tuple(r) for r in await self._fetch(q.JOB_COUNT_LIVE, {"owner": owner}, rows=tuple_row)]

    async def job_count_finished(self, *, since: Any, until: Any, bucket_seconds: int,
                                 owner: str | None = None) -> list[tuple]:
        """(bucket start, function, status, count) of jobs finished in [since, until)."""
        # Not prepared: a custom plan sees how wide the range is.
        return [tuple(r) for r in await self._fetch(q.JOB_COUNT_FINISHED, {
            "since": since, "until": until, "bucket_seconds": bucket_seconds, "owner": owner},
            rows=tuple_row, prepare=False)]

    async def job_count_queues(self, *, since: Any, owner: str | None = None) -> list[dict]:
        """Per queue: waiting, pending, due, running now, the oldest due job's age in seconds;
        succeeded and failed since ``since``."""
        return await self._fetch(q.JOB_COUNT_QUEUES, {"since": since, "owner": owner}, prepare=False)

    async def job_oldest_due(self, *, owner: str | None = None, now: Any = None) -> float | None:
        return (await self._fetch(q.JOB_OLDEST_DUE, {"owner": owner, "now": now}, rows=tuple_row))[0][0]

    async def job_list_dependants(self, job_id: int, *, owner: str | None = None, limit: int = 100) -> list[dict]:
        return await self._fetch(q.JOB_LIST_DEPENDANTS, {"id": job_id, "owner": owner, "limit": limit})

    async def job_list_brief(self, ids: Sequence[int], *, owner: str | None = None) -> list[dict]:
        return await self._fetch(q.JOB_LIST_BRIEF, {"ids": list(ids), "owner": owner})

    async def job_list_http(self, *, owner: str | None = None, before_id: int | None = None, limit: int = 50,
                            excerpt: int = 200) -> list[dict]:
        return await self._fetch(q.JOB_LIST_HTTP, {"owner": owner, "before_id": before_id, "limit": limit,
                                                   "excerpt": excerpt}, prepare=False)

    async def worker_list(self, *, live_seconds: float = 90) -> list[dict]:
        return await self._fetch(q.WORKER_LIST, {"live_seconds": live_seconds})

    async def job_change_marker(self) -> tuple:
        return tuple((await self._fetch(q.JOB_CHANGE_MARKER, rows=tuple_row))[0])

    async def schema_migration_list(self) -> list[int]:
        """The versions of the applied migrations."""
        return [row[0] for row in await self._fetch(q.SCHEMA_MIGRATION_LIST, rows=tuple_row)]


# -- the `sql` built-in: a command run directly, or as another role --------------------------


async def _set(cur: psycopg.AsyncCursor, settings: dict[str, str | None], *, local: bool) -> None:
    """Settings (statement_timeout, jobline.parent_job) for the transaction (``local``) or the
    session; NULLs left out."""
    given = {name: value for name, value in settings.items() if value is not None}
    if given:
        call = "set_config(%s, %s, true)" if local else "set_config(%s, %s, false)"
        await cur.execute("SELECT " + ", ".join([call] * len(given)), [item for pair in given.items() for item in pair])


async def _run_directly(c: psycopg.AsyncConnection, command: str, settings: dict, max_rows: int) -> dict:
    """As pg_cron runs a command: alone in one simple-protocol query, which PostgreSQL runs as one
    implicit transaction (several statements commit or roll back together), and in which a
    single VACUUM or CREATE INDEX CONCURRENTLY runs, as it cannot in a transaction block. Its
    settings are the session's while it runs, and are reset after; a connection whose reset did
    not complete (the job was cancelled meanwhile) is closed, never handed back to the pool with
    a job's statement_timeout."""
    with translate_errors():
        cur = c.cursor()
        await _set(cur, settings, local=False)
        try:
            await cur.execute(command.encode())  # bytes and no parameters: sent verbatim, as a simple query
            while cur.nextset():  # several statements: report the last, as psql's -c does
                pass
            rows = await cur.fetchmany(max_rows) if cur.description else []
            return {"status": cur.statusmessage, "rowcount": cur.rowcount, "rows": [list(r) for r in rows]}
        finally:
            reset = False
            try:
                if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    await c.rollback()  # a BEGIN without its COMMIT: what pg_cron's closed connection does
                await cur.execute(b"RESET statement_timeout; RESET jobline.parent_job")
                reset = True
            finally:
                if not reset:
                    await c.close()


# Running a command as another role, in a session whose own role (jobline's) may have more
# privileges. `SET ROLE` alone is no boundary: the command could RESET ROLE, or
# set_config('role', ...) back. So (every claim here is tested by tests/db/test_run_as.py):
# 1. SET LOCAL ROLE to the job's role, and create, as that role, a SECURITY DEFINER function in
#    pg_temp (so owned by it) that EXECUTEs the command. Inside a security-definer function
#    PostgreSQL refuses to change `role` or `session_authorization` (RESET ROLE, SET ROLE,
#    set_config('role', ...), SET SESSION AUTHORIZATION, in DO blocks and in functions the
#    command calls alike), and transaction control (COMMIT; ...) does not run in it.
# 2. That is not enough: code can be queued to run at COMMIT, outside the function, where the role
#    can be changed back: a deferred constraint trigger (even one a trigger re-defers while
#    others fire), a cursor WITH HOLD (its query runs when the transaction commits). So after
#    the command, still as its role: CLOSE ALL, then fire every deferred trigger inside a
#    security-restricted operation. A CREATE INDEX runs its index expressions in one, as the
#    table's owner: here an expression on a fresh temporary table of the role's, created after
#    the command (so the command cannot have tampered with it), runs SET CONSTRAINTS ALL
#    IMMEDIATE. In a security-restricted operation the role cannot be changed, no cursor WITH
#    HOLD can be opened, and a trigger deferred again is refused ("cannot fire deferred trigger
#    within security-restricted operation"), so nothing of the command's is left for COMMIT. The
#    fence records that it ran, and the run fails if it did not.
# 3. Before the fence, RESET ALL undoes the settings the command changed (the fence's statements
#    must not meet its search_path); after it, the session's leftovers go (temporary objects,
#    LISTEN, prepared statements, advisory locks), for a pooler that reuses the server's session.
# Assumed: event triggers (only a superuser can make them) call no code the role controls; the
# fence's DDL fires them as the role, outside the function, after RESET ALL.
# Costs and limits: the role needs TEMPORARY on the database (PostgreSQL grants it to PUBLIC by
# default) and this session's role must be a member of it; what cannot run inside a function
# (VACUUM, CREATE INDEX CONCURRENTLY, COMMIT) fails with PostgreSQL's own error; a deferred
# trigger that creates a temporary table fails in the fence. The command's status is its last
# statement's kind and row count (a function cannot see PostgreSQL's command tag), no rows.
_RUN_AS_REFUSAL = """
SELECT CASE WHEN NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) %(role)s)
              THEN 'missing'
            WHEN NOT pg_catalog.pg_has_role(%(role)s, 'MEMBER') THEN 'member'
            WHEN NOT pg_catalog.has_database_privilege(%(role)s, pg_catalog.current_database(), 'CONNECT')
              THEN 'connect'
            WHEN NOT pg_catalog.has_database_privilege(%(role)s, pg_catalog.current_database(), 'TEMPORARY')
              THEN 'temporary'
       END, current_user, pg_catalog.current_database()
"""
_RUN_AS_WRAPPER = b"""
CREATE FUNCTION pg_temp.jobline_command(command text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER AS $body$
DECLARE
  affected bigint;
BEGIN
  EXECUTE command;
  GET DIAGNOSTICS affected = ROW_COUNT;
  EXECUTE 'CLOSE ALL';
  RETURN affected;
END $body$
"""
_RUN_AS_FENCE = b"""
CLOSE ALL;
RESET ALL;
SET LOCAL search_path = pg_catalog, pg_temp;
CREATE TEMPORARY TABLE jobline_fence (key boolean NOT NULL);
CREATE TEMPORARY TABLE jobline_fenced (at timestamptz NOT NULL);
CREATE FUNCTION pg_temp.jobline_flush() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $body$
BEGIN
  SET CONSTRAINTS ALL IMMEDIATE;
  INSERT INTO pg_temp.jobline_fenced VALUES (pg_catalog.clock_timestamp());
  RETURN true;
END $body$;
CREATE FUNCTION pg_temp.jobline_fence_key(boolean) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $body$
BEGIN
  RETURN pg_temp.jobline_flush();
END $body$;
INSERT INTO pg_temp.jobline_fence VALUES (false);
CREATE INDEX ON pg_temp.jobline_fence ((pg_temp.jobline_fence_key(key)));
SELECT pg_catalog.count(*) FROM pg_temp.jobline_fenced
"""
_RUN_AS_CLEAN = b"""
DISCARD TEMP;
UNLISTEN *;
DEALLOCATE ALL;
SELECT pg_catalog.pg_advisory_unlock_all()
"""
_RUN_AS_MISSING = {
    "missing": "role {role} does not exist (any more); the job cannot run as it",
    "member": ("jobline's role {me} cannot act as role {role}: run `GRANT {role} TO {me}` (as a superuser, or as "
               "a role that can grant {role}), or make the job run as another role"),
    "connect": "role {role} may not connect to database {database}: `GRANT CONNECT ON DATABASE {database} TO {role}`",
    "temporary": ("role {role} needs TEMPORARY on database {database} to run a command as itself (jobline runs it "
                  "in a temporary function): `GRANT TEMPORARY ON DATABASE {database} TO {role}`"),
}


async def _run_as(c: psycopg.AsyncConnection, role: str, command: str, settings: dict) -> dict:
    with translate_errors():
        async with c.transaction():
            cur = c.cursor()
            await cur.execute(_RUN_AS_REFUSAL, {"role": role})
            refusal, me, database = await cur.fetchone()
            if refusal is not None:
                names = {"role": sql.Identifier(role).as_string(c), "me": sql.Identifier(me).as_string(c),
                         "database": sql.Identifier(database).as_string(c)}
                raise Forbidden(_RUN_AS_MISSING[refusal].format(**names))
            await _set(cur, settings, local=True)
            await cur.execute("SELECT set_config('role', %s, true)", [role])
            await cur.execute(_RUN_AS_WRAPPER)
            await cur.execute("SELECT pg_temp.jobline_command(%s)", [command])
            affected = (await cur.fetchone())[0]
            await cur.execute(_RUN_AS_FENCE)
            while cur.nextset():  # to the fence's count, the last statement's
                pass
            if (await cur.fetchone())[0] != 1:
                raise DatabaseError("the command's deferred triggers were not fired in a security-restricted "
                                    "operation, so the command was rolled back")
            await cur.execute(_RUN_AS_CLEAN)
    return {"status": command_tag(command, affected), "rowcount": affected, "rows": []}


_SQL_TOKEN = re.compile(r"""--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|\$(\w*)\$.*?\$\1\$|(;)|([A-Za-z_]+)|.""",
                        re.S)
_COUNTED = {"SELECT": "SELECT {n}", "INSERT": "INSERT 0 {n}", "UPDATE": "UPDATE {n}", "DELETE": "DELETE {n}",
            "MERGE": "MERGE {n}", "FETCH": "FETCH {n}", "MOVE": "MOVE {n}", "COPY": "COPY {n}"}


def command_tag(command: str, rowcount: int | None) -> str:
    """The status of a command run as another role, where PostgreSQL's command tag cannot be
    seen: its last statement's first word, with the row count for the statements that have one
    (``SELECT 1``, ``INSERT 0 5``), else the word alone (``VACUUM``, ``CREATE``).

    >>> command_tag("SELECT public.rollup(); -- nightly", 1), command_tag("insert into t values (1)", 1)
    ('SELECT 1', 'INSERT 0 1')
    """
    verb, first = None, None
    for match in _SQL_TOKEN.finditer(command):
        if match.group(2):          # a semicolon ends a statement
            verb, first = first or verb, None
        elif match.group(3) and first is None:
            first = match.group(3).upper()
    verb = first or verb or "OK"
    return _COUNTED[verb].format(n=rowcount or 0) if verb in _COUNTED else verb


# -- enqueue on a given connection: the pool's, or the caller's own transaction ------------
# The async and sync forms differ only in awaiting; the statements and parameters are shared.


# Every enqueue, whoever calls it (App, the operations layer, a caller's own transaction), ends
# in one of the four functions below: they open its span (tracing.py) and store its context.

async def job_insert_on(conn: psycopg.AsyncConnection, new: NewJob) -> Job:
    with tracing.enqueue([new.function], [new.queue]) as span, translate_errors():
        cur = conn.cursor(row_factory=dict_row)
        if new.is_simple:
            await cur.execute(q.JOB_INSERT, insert_params(new, span.context))
            job = new.stored(**await cur.fetchone())
        else:
            await cur.execute(q.JOB_ENQUEUE, insert_params(new))
            await cur.execute(q.JOB_GET, {"id": next(iter((await cur.fetchone()).values())), "owner": None})
            job = Job.from_row(await cur.fetchone())
        span.sent([job.id])
        return job


async def job_insert_many_on(conn: psycopg.AsyncConnection, batch: Batch) -> list[int]:
    """One transaction, one round trip (pipeline mode): an INSERT per group of alike jobs, and
    jobline.enqueue() for each job with dependencies or a unique key, in order."""
    ids: list[int] = [0] * batch.size
    with tracing.enqueue(*_names(batch)) as span, translate_errors():
        async with conn.pipeline(), conn.transaction():
            groups, singles = [], []
            for template, payloads, positions in batch.groups.values():
                groups.append((positions, cur := conn.cursor()))
                await cur.execute(q.JOB_INSERT_MANY, group_params(template, payloads, span.context))
            for position, new in batch.singles:
                singles.append((position, cur := conn.cursor()))
                await cur.execute(q.JOB_INSERT if new.is_simple else q.JOB_ENQUEUE, insert_params(new, span.context))
        for positions, cur in groups:
            _place(ids, positions, await cur.fetchall())
        for position, cur in singles:
            ids[position] = (await cur.fetchone())[0]
        span.sent(ids)
    return ids


def _names(batch: Batch) -> tuple[list[str], list[str]]:
    """The functions and queues of a bulk enqueue, for its span's name and attributes."""
    jobs = [template for template, _, _ in batch.groups.values()] + [new for _, new in batch.singles]
    return [new.function for new in jobs], [new.queue for new in jobs]


def _place(ids: list[int], positions: list[int], rows: list[tuple]) -> None:
    # Ids grow in insertion order, and job_insert_many inserts in payload order.
    for position, job_id in zip(positions, sorted(row[0] for row in rows)):
        ids[position] = job_id



@contextlib.contextmanager
def _pipeline_errors(name: str) -> Iterator[None]:
    try:
        with translate_errors():
            yield
    except DatabaseError as exc:
        if isinstance(exc.__cause__, pg_errors.NoDataFound):
            raise PipelineNotFound(f"no pipeline named {name!r}: pipelines are recorded when a worker or "
                                   "`jobline serve` of the app that declares them starts") from exc.__cause__
        raise


async def pipeline_start_on(conn: psycopg.AsyncConnection, name: str, payload: str, owner: str | None,
                            parent: int | None = None) -> int:
    """Start a run in ``conn``'s current transaction (jobline.start_pipeline); returns its id."""
    with _pipeline_errors(name):
        cur = await conn.execute(q.PIPELINE_START, {"name": name, "payload": payload, "owner": owner,
                                                    "parent": parent})
        return (await cur.fetchone())[0]


def pipeline_start_sync(conn: psycopg.Connection, name: str, payload: str, owner: str | None) -> int:
    """The sync twin of pipeline_start_on, for the caller's own psycopg.Connection."""
    with _pipeline_errors(name):
        return conn.execute(q.PIPELINE_START, {"name": name, "payload": payload, "owner": owner,
                                               "parent": None}).fetchone()[0]


def job_insert_sync(conn: psycopg.Connection, new: NewJob) -> Job:
    with tracing.enqueue([new.function], [new.queue]) as span, translate_errors():
        cur = conn.cursor(row_factory=dict_row)
        if new.is_simple:
            cur.execute(q.JOB_INSERT, insert_params(new, span.context))
            job = new.stored(**cur.fetchone())
        else:
            cur.execute(q.JOB_ENQUEUE, insert_params(new))
            cur.execute(q.JOB_GET, {"id": next(iter(cur.fetchone().values())), "owner": None})
            job = Job.from_row(cur.fetchone())
        span.sent([job.id])
        return job


def job_insert_many_sync(conn: psycopg.Connection, batch: Batch) -> list[int]:
    """The sync twin of job_insert_many_on, for the caller's own psycopg.Connection."""
    ids: list[int] = [0] * batch.size
    with tracing.enqueue(*_names(batch)) as span, translate_errors():
        with conn.pipeline(), conn.transaction():
            groups, singles = [], []
            for template, payloads, positions in batch.groups.values():
                groups.append((positions, cur := conn.cursor()))
                cur.execute(q.JOB_INSERT_MANY, group_params(template, payloads, span.context))
            for position, new in batch.singles:
                singles.append((position, cur := conn.cursor()))
                cur.execute(q.JOB_INSERT if new.is_simple else q.JOB_ENQUEUE, insert_params(new, span.context))
        for positions, cur in groups:
            _place(ids, positions, cur.fetchall())
        for position, cur in singles:
            ids[position] = cur.fetchone()[0]
        span.sent(ids)
    return ids
