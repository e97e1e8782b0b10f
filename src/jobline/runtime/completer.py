"""Completer: records outcomes in batches, one statement per batch, then frees their slots.

Batching is natural, not timed: while one batch is being written, the next outcomes queue
up, and the next write takes all of them. An idle worker therefore writes each outcome at
once, and a busy one writes hundreds per round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..db.store import Store
from .executor import Outcome, first_line
from .inflight import InFlight
from .service import Service

if TYPE_CHECKING:  # prometheus_client loads only in a worker that serves metrics
    from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

MAX_BATCH = 1000


class Completer(Service):
    name = "completer"

    def __init__(self, store: Store, inflight: InFlight, worker_id: str, *, metrics: WorkerMetrics | None = None):
        super().__init__()
        self.store = store
        self.inflight = inflight
        self.worker_id = worker_id
        self.queue: asyncio.Queue[Outcome] = asyncio.Queue()
        self.batch_recorded = asyncio.Event()   # test signal
        # Called with each outcome written (`jobline process` sums them up).
        self.on_recorded: Callable[[Outcome], None] | None = None
        self.metrics = metrics

    def put(self, outcome: Outcome) -> None:
        self.queue.put_nowait(outcome)

    def take_unrecorded(self) -> list[int]:
        """Empty the queue (once stopped); returns the ids of the jobs whose outcomes were not written."""
        ids = []
        while not self.queue.empty():
            ids.append(self.queue.get_nowait().job_id)
        return ids

    async def run(self) -> None:
        # Stopping waits until every outcome already handed over is written.
        while not (self.stopping.is_set() and self.queue.empty()):
            if self.queue.empty():
                getter = asyncio.ensure_future(self.queue.get())
                stopper = asyncio.ensure_future(self.stopping.wait())
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    continue
                batch = [getter.result()]
            else:
                batch = []
            while len(batch) < MAX_BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            await self._record(batch)

    async def _record(self, batch: list[Outcome]) -> None:
        try:
            done = await self.store.job_complete_many(self.worker_id, {
                "ids": [o.job_id for o in batch],
                "attempts": [o.attempt for o in batch],
                "statuses": [o.status for o in batch],
                "retry_in": [o.retry_in for o in batch],
                "results": [o.result for o in batch],
                "errors": [o.error for o in batch],
                "tracebacks": [o.traceback for o in batch],
                "outcomes": [o.outcome for o in batch],
                "started_at": [o.started_at for o in batch],
                "finished_at": [o.finished_at for o in batch],
            })
        except BaseException:
            # Put the batch back and let the service loop pause and retry: the leases keep
            # the jobs ours meanwhile (the heartbeat goes on renewing them). Cancelled (a stop
            # that timed out), the batch stays counted by take_unrecorded().
            for outcome in batch:
                self.queue.put_nowait(outcome)
            raise
        written = {job_id for job_id, _ in done}
        verbose = log.isEnabledFor(logging.INFO)
        for outcome in batch:
            self.inflight.release(outcome.job_id)
            if verbose or outcome.status != "succeeded" or outcome.job_id not in written:
                self._log(outcome, outcome.job_id in written)
        if self.metrics is not None:
            self.metrics.record_outcomes(batch, written)
        if self.on_recorded is not None:
            for outcome in batch:
                if outcome.job_id in written:
                    self.on_recorded(outcome)
        self.batch_recorded.set()

    @staticmethod
    def _log(outcome: Outcome, written: bool) -> None:
        facts = {"job_id": outcome.job_id, "function": outcome.function, "attempt": outcome.attempt,
                 "duration_ms": round((outcome.finished_at - outcome.started_at) * 1000, 3)}
        if not written:
            log.warning("job.report_rejected", extra={**facts, "reason": "lease lost (rescued or cancelled)"})
        elif outcome.status == "succeeded":
            log.info("job.succeeded", extra=facts)
        elif outcome.outcome == "snoozed":
            log.info("job.snoozed", extra={**facts, "snooze_s": round(outcome.retry_in, 3)})
        elif outcome.status == "pending":
            log.warning("job.retrying", extra={**facts, "retry_in_s": round(outcome.retry_in, 3),
                                               "error": first_line(outcome.error)})
        elif outcome.status == "cancelled":
            log.info("job.cancelled", extra={**facts, "reason": outcome.error})
        else:
            log.error("job.failed", extra={**facts, "error": first_line(outcome.error)})
