"""Executor: runs one claimed job's handler and turns what happened into an Outcome.

Async handlers run on the worker's loop, sync ones in a bounded thread pool. A timeout stops
an async handler; a sync handler cannot be interrupted, so its attempt is counted as timed out
and its thread is left to finish on its own (documented in docs/concepts/jobs.md).
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import logging
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import tracing
from ..db.store import Store
from ..errors import Cancel, Fail, InvalidInput, Retry, RetryIn, Snooze
from ..job import MAX_ERROR_CHARS, encode_result
from ..retry import retries
from .connections import ConnectionLimit
from .context import JobContext
from .registry import Function, Registry

log = logging.getLogger(__name__)



@dataclasses.dataclass(slots=True)
class Outcome:
    job_id: int
    attempt: int
    status: str             # the job's next status: succeeded, pending (retry), failed, cancelled
    outcome: str            # the attempt's: succeeded, failed, timeout, cancelled
    started_at: float       # Unix time, from the worker's clock
    finished_at: float
    function: str
    result: str | None = None   # JSON text
    error: str | None = None
    retry_in: float | None = None
    traceback: str | None = None  # for operators only: it names the server's files
    queue: str | None = None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[:MAX_ERROR_CHARS]


def _kept_result(value: Any) -> str | None:
    """The result a failing attempt left (Fail, Retry, RetryIn), as JSON text; None when there
    is none, or when it cannot be stored (the failure itself is still recorded)."""
    try:
        return encode_result(value)
    except InvalidInput:
        return None


async def call_handler(function: Function, payload: dict, ctx: JobContext | None, threads: ThreadPoolExecutor) -> Any:
    """Call a handler with what it takes (the payload, ``ctx``): an async one on this loop, a
    sync one in ``threads``. Once it has returned, the connections it left open are closed (a
    sync handler that timed out goes on running in its thread: closed when it returns)."""
    args: tuple = (payload,) if function.takes_payload else ()
    if function.wants_context:
        args += (ctx,)
    if function.is_async:
        try:
            return await function.handler(*args)
        finally:
            if ctx is not None:
                await ctx.close_left_open_async()
    future = threads.submit(functools.partial(contextvars.copy_context().run, function.handler, *args))
    if ctx is not None:
        future.add_done_callback(lambda _: ctx.close_left_open())
    return await asyncio.wrap_future(future)


def first_line(error: str | None, limit: int = 200) -> str | None:
    """The summary line of an error text (for logs and listings)."""
    return error.strip().split("\n", 1)[0][:limit] if error and error.strip() else None


class Executor:
    def __init__(self, store: Store | None, registry: Registry, worker_id: str, threads: int,
                 connections: ConnectionLimit | None = None):
        # store is None in a remote worker: handlers' contexts then have no database.
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.connections = connections  # the bound on handlers' own connections (ctx.connect())
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jobline-handler")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def run(self, job: tuple) -> Outcome:
        """Run a claimed job: (id, function, payload, attempt, max_attempts, queue, owner,
        trace_context[, upstream]), in an attempt span when the application traces (jobline/tracing.py)."""
        with tracing.attempt(job) as span:
            outcome = await self._run(job)
            span.finished(outcome)
        return outcome

    async def _run(self, job: tuple) -> Outcome:
        function, payload = self.registry.get(job[1]), job[2]
        started_at = time.time()
        began = time.perf_counter()
        try:
            if function.timeout is None:
                value = await self._call(function, payload, job)
            else:
                async with asyncio.timeout(function.timeout):
                    value = await self._call(function, payload, job)
            result = encode_result(value)
        except Fail as signal:
            tracing.failed(signal, first_line(signal.reason) or "")
            return self._outcome(job, started_at, "failed", "failed", error=signal.reason,
                                 result=_kept_result(signal.result))
        except Cancel as signal:
            return self._outcome(job, started_at, "cancelled", "cancelled", error=signal.reason)
        except Snooze as signal:
            # Back to pending without spending an attempt (job_complete_many.sql); whatever the
            # attempt number, even the last.
            return self._outcome(job, started_at, "pending", "snoozed", retry_in=signal.seconds)
        except RetryIn as signal:
            return self._failure(job, function, started_at, signal.reason, signal, retry_in=signal.seconds,
                                 result=_kept_result(signal.result))
        except Retry as signal:
            return self._failure(job, function, started_at, _describe(signal), signal,
                                 result=_kept_result(signal.result))
        except TimeoutError as exc:
            elapsed = time.perf_counter() - began
            if function.timeout is not None and elapsed >= function.timeout:
                message = f"timed out after {function.timeout:g} s"
                return self._failure(job, function, started_at, message, exc, outcome="timeout")
            return self._failure(job, function, started_at, _describe(exc), exc, traceback=_traceback(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._failure(job, function, started_at, _describe(exc), exc, traceback=_traceback(exc))
        return self._outcome(job, started_at, "succeeded", "succeeded", result=result)

    async def _call(self, function: Function, payload: dict, job: tuple) -> Any:
        ctx = None
        if function.wants_context:
            job_id, name, _, attempt, max_attempts, queue, owner = job[:7]
            upstream = job[8] if len(job) > 8 and job[8] is not None else {}
            ctx = JobContext(job_id, attempt, max_attempts, name, queue, owner, self.worker_id, self.store,
                             self.connections, upstream=upstream)
        return await call_handler(function, payload, ctx, self._threads)

    def _failure(self, job: tuple, function: Function, started_at: float, error: str, exc: BaseException, *,
                 outcome: str = "failed", retry_in: float | None = None, result: str | None = None,
                 traceback: str | None = None) -> Outcome:
        tracing.failed(exc, first_line(error) or "")  # a retry is an error too, to a trace
        attempt, max_attempts = job[3], job[4]
        facts = {"error": error, "result": result, "traceback": traceback}
        if not retries(attempt, max_attempts):
            return self._outcome(job, started_at, "failed", outcome, **facts)
        delay = function.backoff.delay(attempt) if retry_in is None else retry_in
        return self._outcome(job, started_at, "pending", outcome, retry_in=delay, **facts)

    def _outcome(self, job: tuple, started_at: float, status: str, outcome: str, **fields) -> Outcome:
        return Outcome(job_id=job[0], attempt=job[3], status=status, outcome=outcome, function=job[1], queue=job[5],
                       started_at=started_at, finished_at=time.time(), **fields)
