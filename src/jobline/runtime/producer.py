"""Producer: claims due jobs for free slots in one statement, and starts them.

It sleeps until woken: by a notification (a job was added), by slots freeing while more jobs
are known to be due, or by the poll interval, the fallback for jobs that become due by the
clock (delays, retries) and for a listener that is reconnecting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..db.store import Store
from .completer import Completer
from .executor import Executor
from .inflight import Held, InFlight
from .service import Service

if TYPE_CHECKING:  # prometheus_client loads only in a worker that serves metrics
    from .metrics import WorkerMetrics

log = logging.getLogger(__name__)


class Producer(Service):
    name = "producer"

    def __init__(self, store: Store, inflight: InFlight, executor: Executor, completer: Completer, *,
                 worker_id: str, functions: list[str], queues: list[str] | None,
                 batch_size: int, lease_seconds: float, poll_interval: float, until_idle: bool = False,
                 metrics: WorkerMetrics | None = None):
        super().__init__()
        self.store = store
        self.inflight = inflight
        self.executor = executor
        self.completer = completer
        self.worker_id = worker_id
        self.functions = functions
        self.queues = queues
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.until_idle = until_idle     # `jobline process`: stop when nothing is left to run
        self.limit: int | None = None    # stop after claiming this many jobs (`process --limit`)
        self.claimed = 0
        self.metrics = metrics

    async def run(self) -> None:
        wake = self.inflight.wake
        while not self.stopping.is_set():
            held: float | None = None
            wake.clear()  # before claiming: a notification during the claim is not lost
            free = self.inflight.free()
            if self.limit is not None:
                free = min(free, self.limit - self.claimed)
            if free > 0:
                want = min(free, self.batch_size)
                began = time.perf_counter()
                jobs = await self.store.job_claim_many(
                    worker_id=self.worker_id, functions=self.functions, queues=self.queues,
                    limit=want, lease_seconds=self.lease_seconds)
                if self.metrics is not None:
                    self.metrics.record_claim(jobs, time.perf_counter() - began)
                self.inflight.more_due = len(jobs) == want
                self.claimed += len(jobs)
                for job in jobs:
                    held = Held(job_id=job[0], attempt=job[3])
                    self.inflight.add(held)
                    held.task = asyncio.create_task(self._execute(job))
                if jobs:
                    log.debug("jobs.claimed", extra={"count": len(jobs)})
                if self.inflight.more_due and self.inflight.free() > 0:
                    continue
                held = await self._held_back()
                # wake (cleared before the claim) is set when our last held job was let go
                # meanwhile: its outcome may have released others, so look once more.
                if self.until_idle and not jobs and not self.inflight and held is None and not wake.is_set():
                    return
            if self.limit is not None and self.claimed >= self.limit and not self.inflight:
                return
            if self.until_idle and not self.inflight and held is None:
                continue  # nothing held and the last claim found work: look again now
            await self._sleep_until_woken(held)

    async def _held_back(self) -> float | None:
        """After a short claim: whether flow-control limits held jobs back (0019), and then how
        long until one may be admitted, so the producer sleeps no longer (not a whole poll
        interval when a rate window opens sooner). None: the claim was short for want of jobs."""
        wait = await self.store.limit_wait(functions=self.functions, queues=self.queues)
        if wait is None:
            return None
        # A slot of ours freeing may admit a held job: the next finish wakes us (InFlight).
        self.inflight.more_due = True
        if self.until_idle and wait == float("inf") and not self.inflight:
            return None  # only other workers' jobs hold the slots: `process` has nothing to run
        return max(0.005, wait)

    async def _sleep_until_woken(self, held: float | None = None) -> None:
        timeout = self.poll_interval if held is None else min(self.poll_interval, held)
        waiter = asyncio.ensure_future(self.inflight.wake.wait())
        stopper = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()

    async def _execute(self, job: tuple) -> None:
        try:
            outcome = await self.executor.run(job)
        except asyncio.CancelledError:
            return  # lease lost or hard shutdown: the job is no longer ours to report on
        self.inflight.finished(job[0])
        self.completer.put(outcome)
