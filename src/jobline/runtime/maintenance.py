"""Maintenance: rescues jobs whose lease expired, prunes old jobs, schedule runs and dead
worker rows.

It runs in every worker; SKIP LOCKED lets several rescuers share the work safely. It is a loop
of its own, never a job in the queue it looks after, so it keeps working when every worker
slot is busy.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..db.store import Store
from ..settings import Settings
from .service import Service

if TYPE_CHECKING:  # prometheus_client loads only in a worker that serves metrics
    from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0
PRUNE_BATCH = 5000


class Maintenance(Service):
    name = "maintenance"

    def __init__(self, store: Store, settings: Settings, *, metrics: WorkerMetrics | None = None):
        super().__init__()
        self.store = store
        self.settings = settings
        # Rescue delay is lease + interval: with the default 30 s lease, under 40 s.
        self.rescue_interval = min(5.0, settings.lease_seconds / 6)
        self._next_prune = 0.0
        self.metrics = metrics

    async def run(self) -> None:
        while True:
            await self.rescue()
            if time.monotonic() >= self._next_prune:
                await self.prune()
                self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            if await self.sleep(self.rescue_interval):
                return

    async def rescue(self) -> int:
        rescued = await self.store.job_rescue_expired()
        for job_id, status, function, _ in rescued:
            log.warning("job.rescued", extra={"job_id": job_id, "status": status, "function": function})
        if self.metrics is not None and rescued:
            self.metrics.record_rescues(rescued)
        return len(rescued)

    async def prune(self) -> int:
        s = self.settings
        total = 0
        while True:  # bounded batches, so no statement holds locks for long
            deleted = await self.store.job_prune_finished(
                succeeded_seconds=s.retain_succeeded_seconds, failed_seconds=s.retain_failed_seconds,
                cancelled_seconds=s.retain_cancelled_seconds, limit=PRUNE_BATCH)
            total += deleted
            if deleted < PRUNE_BATCH or self.stopping.is_set():
                break
        # Runs that made no job (skipped, missed) are kept as long as failures; the others go
        # with their jobs.
        await self.store.schedule_run_prune(seconds=s.retain_failed_seconds, limit=PRUNE_BATCH)
        # Pipeline runs go once their steps' jobs have gone (each with its own state's retention).
        await self.store.pipeline_run_prune(seconds=min(s.retain_succeeded_seconds, s.retain_failed_seconds,
                                                        s.retain_cancelled_seconds), limit=PRUNE_BATCH)
        await self.store.worker_prune_dead(dead_seconds=max(3600.0, 10 * s.lease_seconds))
        await self.store.queue_exemption_prune()
        if total:
            log.info("jobs.pruned", extra={"count": total})
        return total
