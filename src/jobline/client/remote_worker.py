"""RemoteWorker: the worker loop over HTTP (`jobline worker --remote URL --token TOKEN`), for
machines that cannot reach the database.

It claims tasks of the App's own functions (never the built-ins ``sql`` and ``http``) one at a
time through ``claim-next-task``, runs up to ``concurrency`` at once with the local worker's
executor (same timeouts, signals and retry backoff; handlers' contexts have no database),
heartbeats each task every third of its lease, and reports the outcome:

===========================  ===============================================================
handler                      report
===========================  ===============================================================
returns                      complete(result)
raises Fail                  fail(retryable=False): final
raises RetryIn(s)            fail(retry_in=s)
raises Cancel                fail(retryable=False), error "cancelled: ...": the protocol has
                             no cancel, so the job ends failed (its dependants are cancelled)
raises, or times out         fail(retry_in=the function's backoff), final on the last attempt
===========================  ===============================================================

Polling: when nothing is claimable it waits 0.2 s, doubling to at most 2 s while the queue stays
empty, and claims again at once after a task. After an error (the server unreachable without a
fallback, a 429) it waits 1 s, doubling to 30 s. A credential the server refuses (401/403) on
the first claim stops the worker with that error; later it is logged and retried.

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
import signal
import socket
from collections.abc import Sequence

from ..job import BUILTIN_FUNCTIONS
from ..errors import AuthError, ConfigError, InvalidInput, JobNotFound, JoblineError, LeaseLost
from ..runtime.executor import Executor, Outcome, first_line
from ..runtime.registry import Registry
from ..tasks import Task
from .client import Client

log = logging.getLogger(__name__)

IDLE_WAIT = (0.2, 2.0)     # seconds between empty claims: first, most
ERROR_WAIT = (1.0, 30.0)   # seconds after a failed claim or report: first, most
MIN_HEARTBEAT_SECONDS = 1.0


class RemoteWorker:
    def __init__(self, client: Client, registry: Registry, *, concurrency: int = 10, grace_seconds: float = 30.0,
                 task_types: Sequence[str] | None = None, worker_id: str | None = None):
        self.client = client
        self.registry = registry
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
        """Claim and run tasks until stop() or a signal; raises the server's AuthError if the
        very first claim is refused."""
        if handle_signals:
            self._install_signal_handlers()
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
            try:
                task = await self.client.claim_next_task_async(self.task_types)
            except AuthError as exc:
                slots.release()
                if not started:
                    log.error("worker.refused", extra={"worker_id": self.id, "error": str(exc)})
                    raise
                log.error("claim.failed", extra={"error": str(exc), "retry_in_s": failing})
                await self._pause(failing)
                failing = min(failing * 2, ERROR_WAIT[1])
                continue
            except JoblineError as exc:
                slots.release()
                log.warning("claim.failed", extra={"error": str(exc), "retry_in_s": failing})
                await self._pause(failing)
                failing = min(failing * 2, ERROR_WAIT[1])
                continue
            started, failing = True, ERROR_WAIT[0]
            if task is None:
                slots.release()
                log.debug("claim.empty", extra={"wait_s": idle})
                await self._pause(idle)
                idle = min(idle * 2, IDLE_WAIT[1])
                continue
            idle = IDLE_WAIT[0]
            self.claimed += 1
            run = asyncio.create_task(self._run_task(task), name=f"jobline-remote-{task.task_id}")
            self.running[task.task_id] = run
            run.add_done_callback(lambda _, t=task.task_id: (self.running.pop(t, None), slots.release()))

    async def _run_task(self, task: Task) -> None:
        function = self.registry.get(task.task_type)
        job = (task.task_id, task.task_type, task.params, task.attempt, task.max_attempts, function.queue,
               task.project_id)
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
        lease = (task.lease_until - dt.datetime.now(dt.timezone.utc)).total_seconds()
        interval = max(MIN_HEARTBEAT_SECONDS, lease / 3)
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
            except JoblineError as exc:
                log.warning("job.report_failed", extra={**facts, "error": str(exc), "retry_in_s": wait})
                await asyncio.sleep(wait)
                wait = min(wait * 2, ERROR_WAIT[1])
                continue
            break
        self.reported += 1
        if outcome.status == "succeeded":
            log.info("job.succeeded", extra=facts)
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

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        count = 0

        def on_signal(signum: int) -> None:
            nonlocal count
            count += 1
            if count == 1:
                log.info("worker.stopping", extra={"signal": signal.Signals(signum).name,
                                                   "grace_s": self.grace_seconds})
                self._stop.set()
            else:
                self._hurry.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (shutdown), not just its handler."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
