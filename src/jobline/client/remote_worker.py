"""RemoteWorker: the worker loop over HTTP (`jobline worker --remote URL --token TOKEN`), for
machines that cannot reach the database.

It claims tasks of the App's own functions (never the built-ins ``sql`` and ``http``) through
``claim-next-task``, as many per request as it has free slots (up to 100; one slot: a plain
single claim), runs up to ``concurrency`` at once with the local worker's
executor (same timeouts, signals and retry backoff; handlers' contexts have no database),
heartbeats each task every third of its lease, and reports the outcome. The lease's length is
the one the Client measured in the server's clock (``ClaimedTask.lease_seconds``), never
``lease_until`` against the local clock: a worker whose clock is behind would heartbeat too late
and lose its tasks. Only when the server sends no ``Date`` header is the local clock used, and
then trusted for at most ``FALLBACK_LEASE_SECONDS`` (the default lease).

The outcome is reported as:

===========================  ===============================================================
handler                      report
===========================  ===============================================================
returns                      complete(result)
raises Fail                  fail(retryable=False): final
raises RetryIn(s)            fail(retry_in=s)
raises Snooze(s)             snooze(s): no attempt spent
raises Cancel                fail(retryable=False), error "cancelled: ...": the protocol has
                             no cancel, so the job ends failed (its dependants are cancelled)
raises, or times out         fail(retry_in=the function's backoff), final on the last attempt
===========================  ===============================================================

Polling: when nothing is claimable it waits 0.2 s, doubling to at most 2 s while the queue stays
empty, and claims again at once after a task. After an error (the server unreachable without a
fallback) it waits 1 s, doubling to 30 s; after a 429, as long as its ``Retry-After`` says.

A report that fails is sent again, with the same waits, until it lands, except when the answer
is final: 409/404 (the lease was lost), another 4xx such as 422 (the report is refused), or
401/403 (the credential was refused: the report is dropped, logged as an ERROR, and the task is
rescued when its lease expires). A 429 is not final: the report is sent again after Retry-After.

A credential refused (401/403) on a claim stops the worker: on the first claim with the server's
error (a wrong token), on a later one with an error saying the token has expired or been revoked
(a user JWT past its ``exp``, a revoked API token). ``run()`` raises it; `jobline worker --remote`
exits 1.

Shutdown (SIGTERM/SIGINT, or ``request_stop()``): stop claiming, give running tasks
``grace_seconds`` to finish and report, then abandon the rest: their heartbeats stop, so the
server rescues them when their lease expires. A second signal skips the grace period.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import socket
from collections.abc import Sequence

from ..errors import AuthError, ConfigError, InvalidInput, JobNotFound, JoblineError, LeaseLost
from ..job import BUILTIN_FUNCTIONS
from ..runtime.executor import Executor, Outcome, first_line
from ..runtime.registry import Registry
from ..runtime.service import install_stop_signals
from ..operations.tasks import MAX_CLAIM_LIMIT, Task
from .client import Client, RateLimited

log = logging.getLogger(__name__)

IDLE_WAIT = (0.2, 2.0)     # seconds between empty claims: first, most
ERROR_WAIT = (1.0, 30.0)   # seconds after a failed claim or report: first, most
MIN_HEARTBEAT_SECONDS = 1.0
# JOBLINE_REMOTE_LEASE_SECONDS's default: the most a lease read off the local clock is trusted for.
FALLBACK_LEASE_SECONDS = 300.0


class RemoteWorker:
    def __init__(self, client: Client, registry: Registry, *, concurrency: int = 10, grace_seconds: float = 30.0,
                 task_types: Sequence[str] | None = None, worker_id: str | None = None):
        self.client = client
        self.registry = registry
        self._batch_claims = True  # until a server from before batch claims refuses one
        self.task_types = sorted(task_types if task_types is not None else
                                 (n for n in registry.names() if n not in BUILTIN_FUNCTIONS))
        if not self.task_types:
            raise ConfigError("the App registers no functions of its own (sql and http are never run remotely): "
                              "give --app module:app with @app.function handlers")
        for name in self.task_types:
            registry.get(name)  # FunctionNotFound for a task type this process cannot run
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.id = worker_id or f"remote:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.executor: Executor | None = None
        self.running: dict[int, asyncio.Task] = {}   # task id -> the task's run (handler, heartbeat, report)
        self.claimed = 0
        self.reported = 0
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Claim and run tasks until stop() or a signal. Raises AuthError when a claim's
        credential is refused (a wrong token on the first claim; later, one that has expired or
        been revoked), after giving running tasks the grace period."""
        if handle_signals:
            install_stop_signals(self._stop, self._hurry, self.grace_seconds)
        self.executor = Executor(None, self.registry, self.id, threads=min(self.concurrency, 256))
        log.info("worker.started", extra={"worker_id": self.id, "remote": self.client.url,
                                          "functions": self.task_types, "concurrency": self.concurrency,
                                          "fallback": self.client.settings is not None})
        try:
            await self._claim_loop()
        finally:
            await self._shutdown()

    async def _claim_loop(self) -> None:
        slots = asyncio.Semaphore(self.concurrency)
        idle, failing = IDLE_WAIT[0], ERROR_WAIT[0]
        started = False
        while not self._stop.is_set():
            if not await self._until_stopped(slots.acquire()):
                return
            # One request for every free slot: a worker with 50 free slots and a backlog fills
            # them in one round trip instead of 50.
            wanted = 1
            while wanted < MAX_CLAIM_LIMIT and not slots.locked():
                await slots.acquire()  # free at once: the semaphore is not locked
                wanted += 1
            try:
                tasks = await self._claim(wanted)
            except AuthError as exc:
                # Retrying cannot help: the token stays refused, and every report would be too.
                _release(slots, wanted)
                log.error("worker.refused", extra={"worker_id": self.id, "error": str(exc)})
                if not started or self.client.outage is not None:
                    raise  # a wrong token, or one the fallback cannot verify: the message says which
                raise type(exc)(
                    f"the server no longer accepts this worker's token ({exc}): it has expired or been revoked. "
                    "Start the worker again with a valid token; for a long-running worker use an API token "
                    "(`jobline tokens create --user ID`), which does not expire") from exc
            except JoblineError as exc:
                _release(slots, wanted)
                delay = _delay(exc, failing)
                log.warning("claim.failed", extra={"error": str(exc), "retry_in_s": delay})
                await self._pause(delay)
                failing = min(failing * 2, ERROR_WAIT[1])
                continue
            started, failing = True, ERROR_WAIT[0]
            _release(slots, wanted - len(tasks))
            if not tasks:
                log.debug("claim.empty", extra={"wait_s": idle})
                await self._pause(idle)
                idle = min(idle * 2, IDLE_WAIT[1])
                continue
            idle = IDLE_WAIT[0]
            log.debug("claim.batch", extra={"wanted": wanted, "claimed": len(tasks)})
            for task in tasks:
                self.claimed += 1
                run = asyncio.create_task(self._run_task(task), name=f"jobline-remote-{task.task_id}")
                self.running[task.task_id] = run
                run.add_done_callback(lambda _, t=task.task_id: (self.running.pop(t, None), slots.release()))

    async def _claim(self, wanted: int) -> list[Task]:
        if wanted > 1 and self._batch_claims:
            try:
                return await self.client.claim_next_tasks_async(wanted, self.task_types)
            except InvalidInput:  # a server from before batch claims refuses `limit`: claim one at a time
                log.info("claim.batch_unsupported")
                self._batch_claims = False
        # One slot (or an older server): the single claim, which every server answers.
        task = await self.client.claim_next_task_async(self.task_types)
        return [] if task is None else [task]

    async def _run_task(self, task: Task) -> None:
        function = self.registry.get(task.task_type)
        job = (task.task_id, task.task_type, task.params, task.attempt, task.max_attempts, function.queue,
               task.project_id, None,  # no trace context: the task API does not carry one (yet)
               task.upstream)
        log.debug("job.claimed", extra={"job_id": task.task_id, "function": task.task_type, "attempt": task.attempt})
        handler = asyncio.create_task(self.executor.run(job))
        beat = asyncio.create_task(self._heartbeat(task, handler))
        try:
            try:
                outcome = await handler
            except asyncio.CancelledError:
                if handler.cancelled() and not _cancelling():
                    return  # the lease was lost: the heartbeat said so, and a report would be refused
                raise
            await self._report(task, outcome)
        finally:
            beat.cancel()
            handler.cancel()

    async def _heartbeat(self, task: Task, handler: asyncio.Task) -> None:
        interval = max(MIN_HEARTBEAT_SECONDS, lease_seconds(task) / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.client.heartbeat_async(task)
            except (LeaseLost, JobNotFound) as exc:
                log.warning("job.lease_lost", extra={"job_id": task.task_id, "attempt": task.attempt,
                                                     "error": str(exc)})
                handler.cancel()
                return
            except JoblineError as exc:  # unreachable: keep the handler going and try again
                log.warning("job.heartbeat_failed", extra={"job_id": task.task_id, "error": str(exc)})

    async def _report(self, task: Task, outcome: Outcome) -> None:
        facts = {"job_id": task.task_id, "function": task.task_type, "attempt": task.attempt,
                 "duration_ms": round((outcome.finished_at - outcome.started_at) * 1000, 3)}
        wait = ERROR_WAIT[0]
        while True:
            try:
                if outcome.status == "succeeded":
                    await self.client.complete_async(task, None if outcome.result is None else json.loads(outcome.result))
                elif outcome.outcome == "snoozed":
                    await self.client.snooze_async(task, outcome.retry_in)
                elif outcome.status == "pending":
                    await self.client.fail_async(task, outcome.error or outcome.outcome, retry_in=outcome.retry_in)
                elif outcome.status == "cancelled":
                    await self.client.fail_async(task, f"cancelled: {outcome.error or 'by handler'}", retryable=False)
                else:
                    await self.client.fail_async(task, outcome.error or outcome.outcome, retryable=False)
            except (LeaseLost, JobNotFound) as exc:
                log.warning("job.report_rejected", extra={**facts, "reason": str(exc)})
                return
            except InvalidInput as exc:  # the server refuses this report for good: do not loop
                log.error("job.report_rejected", extra={**facts, "reason": str(exc)})
                return
            except AuthError as exc:
                # An expired or revoked token is refused on every retry: holding the slot for it
                # would wedge the worker. The claim loop stops on its next claim.
                log.error("job.report_rejected", extra={**facts, "reason": str(exc),
                                                        "note": "credential refused: rescued when its lease expires"})
                return
            except JoblineError as exc:  # unreachable, or a 429: send it again
                delay = _delay(exc, wait)
                log.warning("job.report_failed", extra={**facts, "error": str(exc), "retry_in_s": delay})
                await asyncio.sleep(delay)
                wait = min(wait * 2, ERROR_WAIT[1])
                continue
            break
        self.reported += 1
        if outcome.status == "succeeded":
            log.info("job.succeeded", extra=facts)
        elif outcome.outcome == "snoozed":
            log.info("job.snoozed", extra={**facts, "snooze_s": round(outcome.retry_in, 3)})
        elif outcome.status == "pending":
            log.warning("job.retrying", extra={**facts, "retry_in_s": round(outcome.retry_in, 3),
                                               "error": first_line(outcome.error)})
        else:
            log.error("job.failed", extra={**facts, "error": first_line(outcome.error)})

    async def _shutdown(self) -> None:
        if self.running:
            drained = asyncio.ensure_future(asyncio.wait(list(self.running.values())))
            hurried = asyncio.ensure_future(self._hurry.wait())
            await asyncio.wait({drained, hurried}, timeout=self.grace_seconds, return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            hurried.cancel()
        abandoned, runs = list(self.running), list(self.running.values())
        for run in runs:
            run.cancel()
        if runs:
            await asyncio.wait(runs, timeout=5)
            log.warning("jobs.abandoned", extra={"count": len(abandoned), "job_ids": abandoned,
                                                 "note": "no longer heartbeated: rescued when their lease expires"})
        if self.executor is not None:
            self.executor.close()
        log.info("worker.stopped", extra={"worker_id": self.id, "claimed": self.claimed, "reported": self.reported,
                                          "fallbacks": self.client.fallbacks})

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _until_stopped(self, awaitable) -> bool:
        """Await ``awaitable`` unless a stop comes first; True when it completed before a stop."""
        waiting = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
            return False
        return not self._stop.is_set()


def lease_seconds(task: Task, now: dt.datetime | None = None) -> float:
    """How long ``task``'s lease runs from its claim: as the Client measured it in the server's
    clock, else ``lease_until`` against the local clock (``now``), trusted for at most
    FALLBACK_LEASE_SECONDS since a clock that is behind makes it look longer than it is.

    >>> task = await client.claim_next_task_async()  # doctest: +SKIP
    >>> lease_seconds(task)                          # doctest: +SKIP
    298.0
    """
    measured = getattr(task, "lease_seconds", None)
    if measured is not None:
        return measured
    local = (task.lease_until - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    return min(local, FALLBACK_LEASE_SECONDS)


def _release(slots: asyncio.Semaphore, count: int) -> None:
    for _ in range(count):
        slots.release()


def _delay(exc: JoblineError, backoff: float) -> float:
    """How long to wait before trying again after ``exc``: a 429's Retry-After, else ``backoff``."""
    if isinstance(exc, RateLimited) and exc.retry_after is not None:
        return max(exc.retry_after, ERROR_WAIT[0])
    return backoff


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (shutdown), not just its handler."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
