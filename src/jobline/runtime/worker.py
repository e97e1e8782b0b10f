"""Worker: the composition root of a worker process. Wires the roles together, registers the
worker in the database, reconciles the schedules declared in code, and shuts down gracefully.
A process may run only some roles: `jobline scheduler` is a Worker without jobs.

Shutdown (SIGTERM/SIGINT, or ``stop()``): stop claiming, give running jobs ``grace_seconds``
to finish, record their outcomes, hand the unfinished ones back to the queue without
counting the interrupted attempt, and unregister. Those last writes get FINAL_WRITES_SECONDS,
so that a worker whose database is down still exits.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from ..db.store import JOBS_CHANNEL, SCHEDULES_CHANNEL, Store
from ..errors import Conflict, DatabaseError, FunctionNotFound
from ..limit import LimitSpec
from ..schedule import ScheduleSpec
from ..settings import Settings
from .completer import Completer
from .connections import ConnectionLimit
from .executor import Executor, Outcome, first_line
from .heartbeat import Heartbeat
from .inflight import Held, InFlight
from .maintenance import Maintenance
from .notifier import Notifier
from .producer import Producer
from .registry import Registry
from .scheduler import Scheduler
from .service import install_stop_signals

log = logging.getLogger(__name__)

T = TypeVar("T")

# After the grace, a stopping worker's last writes (handing back unfinished jobs, recording
# outcomes, unregistering) get this long in all: a worker whose database is down must still
# exit. So a worker exits at most grace + FINAL_WRITES_SECONDS + a few seconds after SIGTERM.
FINAL_WRITES_SECONDS = 3.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclasses.dataclass
class Summary:
    """What a bounded run (``jobline process``) did."""

    processed: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    by_function: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(collections.Counter))
    results: list = dataclasses.field(default_factory=list)   # the first MAX_RESULTS jobs

    MAX_RESULTS = 1000

    def add(self, outcome: Outcome) -> None:
        field = {"succeeded": "succeeded", "pending": "retried", "failed": "failed",
                 "cancelled": "cancelled"}[outcome.status]
        self.processed += 1
        setattr(self, field, getattr(self, field) + 1)
        self.by_function[outcome.function][field] += 1
        if len(self.results) < self.MAX_RESULTS:
            self.results.append({"id": outcome.job_id, "function": outcome.function, "attempt": outcome.attempt,
                                 "status": outcome.status, "error": first_line(outcome.error)})

    def to_dict(self) -> dict:
        return {"processed": self.processed, "succeeded": self.succeeded, "retried": self.retried,
                "failed": self.failed, "cancelled": self.cancelled,
                "by_function": {f: dict(c) for f, c in sorted(self.by_function.items())},
                "results": self.results}


class Worker:
    def __init__(self, store: Store, registry: Registry, settings: Settings, *,
                 queues: list[str] | None = None, concurrency: int | None = None,
                 batch_size: int | None = None, grace_seconds: float = 30.0,
                 maintenance: bool = True, scheduler: bool = True, jobs: bool = True,
                 schedules: Sequence[ScheduleSpec] = (), owned_functions: Sequence[str] = (),
                 limits: Sequence[LimitSpec] = (), owned_queues: Sequence[str] = (),
                 pipelines: Sequence[tuple[str, str]] = (),
                 worker_id: str | None = None, metrics_socket: socket.socket | None = None):
        self.store = store  # durable: handlers and the sql built-in use it
        # The worker's own bookkeeping (claims, outcomes, leases, rescue) goes through a pool
        # whose commits do not wait for the WAL flush unless configured to: losing such a write
        # in a server crash only makes a job run again, which at-least-once delivery allows.
        self.bookkeeping = Store(store.url, max_size=3, synchronous_commit=settings.worker_synchronous_commit,
                                 prepared_statements=settings.prepared_statements, timeout=settings.pool_timeout)
        self.registry = registry
        self.settings = settings
        self.id = worker_id or new_worker_id()
        self.queues = queues
        self.concurrency = concurrency or settings.concurrency or registry.default_concurrency()
        # Half the slots per claim: one batch runs while the previous one's outcomes are being
        # written, so claiming and recording overlap instead of taking turns.
        self.batch_size = batch_size or max(1, self.concurrency // 2)
        self.grace_seconds = grace_seconds
        self.functions = registry.names()
        # Metrics only when served (--metrics-port, on a socket the caller bound): otherwise the
        # roles count nothing. The queue gauges read through the durable pool, away from claims.
        self.metrics = self.metrics_server = None
        if metrics_socket is not None:  # imported here: prometheus_client is for such workers only
            from .metrics import WorkerMetrics
            from .metrics_server import MetricsServer
            self.metrics = WorkerMetrics(store, queues=queues)
            self.metrics_server = MetricsServer(self.metrics, metrics_socket)
        self.wake = asyncio.Event()
        self.inflight = InFlight(self.concurrency, self.wake)
        self.executor = Executor(store, registry, self.id, threads=min(self.concurrency, 256),
                                 connections=ConnectionLimit(settings.handler_connections, settings.pool_timeout))
        self.completer = Completer(self.bookkeeping, self.inflight, self.id, metrics=self.metrics)
        self.jobs = jobs  # False: claim nothing (a scheduler-only process)
        self.schedule_wake = asyncio.Event()
        wakes = {JOBS_CHANNEL: self.wake} if jobs else {}
        if scheduler:
            wakes[SCHEDULES_CHANNEL] = self.schedule_wake
        self.notifier = Notifier(store, wakes)
        # Ticks create jobs, so they go through the durable pool.
        self.scheduler = Scheduler(store, self.schedule_wake) if scheduler else None
        # Schedules the App declares, and its own functions (whose undeclared code schedules go).
        self.declared_schedules = list(schedules)
        self.owned_functions = list(owned_functions)
        # Flow-control limits the App declares, and the queues of its functions (0019).
        self.declared_limits = list(limits)
        self.owned_queues = list(owned_queues)
        # Pipelines the App declares, as (name, stored steps JSON): recorded at start (0021).
        self.declared_pipelines = list(pipelines)
        self.heartbeat = Heartbeat(self.bookkeeping, self.inflight, self.id, settings.lease_seconds)
        self.maintenance = Maintenance(self.bookkeeping, settings, metrics=self.metrics) if maintenance else None
        self.producer = self._producer()
        self._stop_requested = asyncio.Event()
        self._hurry = asyncio.Event()  # a second signal: stop waiting for running jobs

    def _producer(self, **options) -> Producer:
        return Producer(self.bookkeeping, self.inflight, self.executor, self.completer, worker_id=self.id,
                        functions=self.functions, queues=self.queues, batch_size=self.batch_size,
                        lease_seconds=self.settings.lease_seconds, poll_interval=self.settings.poll_interval,
                        metrics=self.metrics, **options)

    async def _start(self, *, reconcile: bool = True) -> None:
        await self.bookkeeping.open()
        if reconcile:
            await self._reconcile_schedules()
            await self._reconcile_limits()
            await self._record_pipelines()
        services = [self.metrics_server, self.notifier, self.scheduler, self.maintenance]
        if self.jobs:
            await self.bookkeeping.worker_register(id=self.id, hostname=socket.gethostname(), pid=os.getpid(),
                                                   functions=self.functions, queues=self.queues)
            services += [self.completer, self.heartbeat, self.producer]
        for service in services:
            if service is not None:
                service.start()
        log.info("worker.started", extra={"worker_id": self.id, "functions": self.functions if self.jobs else [],
                                          "concurrency": self.concurrency if self.jobs else 0,
                                          "queues": self.queues or "all", "scheduler": self.scheduler is not None})

    async def _reconcile_schedules(self) -> None:
        changes = await self.store.schedule_reconcile_many(self.declared_schedules, self.owned_functions)
        for name, change in changes:
            if change == "shadowed":
                log.warning("schedule.shadowed", extra={"schedule": name, "reason": "a schedule made at run time "
                                                        "holds this name; the declaration in code is ignored"})
            else:
                log.info(f"schedule.{change}", extra={"schedule": name, "source": "code"})

    async def _reconcile_limits(self) -> None:
        changes = await self.store.limit_reconcile_many(self.declared_limits, self.owned_functions, self.owned_queues)
        for scope, target, per_key, change in changes:
            facts = {"scope": scope, "target": target, "per_key": per_key}
            if change == "shadowed":
                log.warning("limit.shadowed", extra={**facts, "reason": "an operator set this limit at run time; "
                                                     "the declaration in code is ignored"})
            else:
                log.info(f"limit.{change}", extra={**facts, "source": "code"})

    async def _record_pipelines(self) -> None:
        if not self.declared_pipelines:
            return
        changed = await self.store.pipeline_upsert_many([n for n, _ in self.declared_pipelines],
                                                        [s for _, s in self.declared_pipelines])
        for name in changed:
            log.info("pipeline.recorded", extra={"pipeline": name, "source": "code"})

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until stop() or a signal."""
        if handle_signals:
            install_stop_signals(self._stop_requested, self._hurry, self.grace_seconds)
        await self._start()
        await self._stop_requested.wait()
        await self._shutdown()

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run_until_idle(self, limit: int | None = None, *, maintenance: bool = False) -> Summary:
        """Run due jobs (and those that become due meanwhile) until none is left, or until
        ``limit`` jobs were claimed; returns what happened."""
        self.producer = self._producer(until_idle=True)
        self.producer.limit = limit
        summary = Summary()
        self.completer.on_recorded = summary.add
        if not maintenance:
            self.maintenance = None
        self.scheduler = None  # ticks would keep adding work: a bounded run only drains
        await self._start(reconcile=False)
        await self.producer.wait()
        await self._shutdown()
        return summary

    async def run_one(self, job_id: int) -> Summary:
        """Claim the pending job ``job_id`` whatever its run_at or queue, run it here, record its
        outcome, and stop (`jobline jobs run ID`: a manual tool that works while its queue is
        paused or no worker runs). Its lease is kept by the heartbeat as in any worker. Conflict
        when the job is not pending; FunctionNotFound when this process has no handler for it."""
        summary = Summary()
        self.completer.on_recorded = summary.add
        # Nothing else is claimed, fired or listened for.
        self.producer = self.scheduler = self.maintenance = self.notifier = None
        await self._start(reconcile=False)
        try:
            current = await self.bookkeeping.job_get(job_id)  # JobNotFound
            if self.registry.find(current.function) is None:
                raise FunctionNotFound(f"job {job_id} is for {current.function!r}, which this process has no handler "
                                       f"for: run it with --app pointing at the App that defines it")
            job = await self.bookkeeping.job_claim_one(job_id, worker_id=self.id,
                                                       lease_seconds=self.settings.lease_seconds)
            if job is None:
                status = (await self.bookkeeping.job_get(job_id)).status
                raise Conflict(f"cannot run job {job_id} now: it is {status}; only a pending job can be run "
                               "(retry a failed or cancelled one first)")
            held = Held(job_id=job[0], attempt=job[3])
            self.inflight.add(held)
            outcome = await self.executor.run(job)
            self.inflight.finished(job[0])
            self.completer.put(outcome)
        finally:
            await self._shutdown()
        return summary

    async def _shutdown(self) -> None:
        # Stop claiming, and the roles draining does not need, at once (each is cancelled if it
        # is stuck on a database that does not answer: see Service.stop).
        await asyncio.gather(*(service.stop() for service in (self.producer, self.scheduler, self.maintenance,
                                                              self.notifier) if service is not None))
        drained = asyncio.ensure_future(self.inflight.wait_empty())
        hurried = asyncio.ensure_future(self._hurry.wait())
        await asyncio.wait({drained, hurried}, timeout=self.grace_seconds, return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()
        hurried.cancel()
        unfinished = [h for h in self.inflight.held() if h.task is not None and not h.task.done()]
        for held in unfinished:
            held.task.cancel()
        # What is left to write gets FINAL_WRITES_SECONDS in all, so that a worker whose
        # database is down still exits. Whatever is not written is safe: the leases expire and
        # the jobs are rescued (the interrupted attempts then count).
        deadline = time.monotonic() + FINAL_WRITES_SECONDS
        if unfinished:
            ids = [h.job_id for h in unfinished]
            handed = await self._final_write("hand back", deadline,
                                             self.bookkeeping.job_hand_back_many(worker_id=self.id, ids=ids))
            for held in unfinished:
                self.inflight.release(held.job_id)
            if handed is not None:
                log.warning("jobs.handed_back", extra={"count": handed, "job_ids": ids})
        await self.completer.stop(timeout=max(0.0, deadline - time.monotonic()))
        unrecorded = self.completer.take_unrecorded()
        if unrecorded:
            log.warning("jobs.unrecorded", extra={"count": len(unrecorded), "job_ids": unrecorded,
                                                  "reason": "the database did not answer in time; their leases "
                                                            "expire and they run again"})
        await self.heartbeat.stop()
        self.executor.close()
        if self.jobs:  # a scheduler-only process never registered
            await self._final_write("unregister", deadline, self.bookkeeping.worker_unregister(self.id))
        if self.metrics_server is not None:  # last: a scrape during the shutdown still answers
            await self.metrics_server.stop()
            self.metrics_server.close()
        await self.bookkeeping.close()
        log.info("worker.stopped", extra={"worker_id": self.id})

    async def _final_write(self, what: str, deadline: float, write: Awaitable[T]) -> T | None:
        """``write``'s result, or None (logged) if the database failed or did not answer by ``deadline``."""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await write
        except (DatabaseError, TimeoutError) as exc:
            log.warning("worker.write_skipped", extra={"worker_id": self.id, "write": what,
                                                       "error": str(exc).strip() or "the database did not answer "
                                                       f"within {FINAL_WRITES_SECONDS:g} s"})
            return None
