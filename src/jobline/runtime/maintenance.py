"""Maintenance: rescues jobs whose lease expired, prunes old jobs, schedule runs, notifications
and dead worker rows, writes the function.failing threshold (JOBLINE_ALERT_FAILURES and
JOBLINE_ALERT_WINDOW) where the database's trigger reads it, and keeps jobline's busiest tables
and indexes from growing for good (upkeep).

It runs in every worker; SKIP LOCKED lets several rescuers share the work safely. It is a loop
of its own, never a job in the queue it looks after, so it keeps working when every worker
slot is busy.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..db.store import Store
from ..errors import DatabaseError
from ..settings import Settings
from .service import Service

if TYPE_CHECKING:  # prometheus_client loads only in a worker that serves metrics
    from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 60.0
PRUNE_BATCH = 5000

# Upkeep (one process per round, whichever claims it): tables whose dead rows autovacuum does not
# reclaim (it is off for the server or the table) are vacuumed once they are 5% dead (plus
# 1,000 rows), the threshold of the per-table autovacuum settings of migration 0022 in spirit;
# a partial index of jobs (which holds only live work) is rebuilt once it is at least 16 MiB
# and eight times the size its entries need, as after a backlog drained: a claim walks its
# emptied pages otherwise, and it would keep the backlog's size for good.
UPKEEP_EVERY_SECONDS = 600.0
UPKEEP_TABLES = ("jobs", "attempts", "schedule_runs")
VACUUM_DEAD_SHARE, VACUUM_DEAD_MIN = 0.05, 1000
REBUILD_MIN_BYTES, REBUILD_BLOAT, ENTRY_BYTES = 16 * 2**20, 8, 64


def needs_vacuum(table: dict) -> bool:
    return not table["autovacuum"] and table["dead"] > VACUUM_DEAD_MIN + VACUUM_DEAD_SHARE * table["live"]


def needs_rebuild(index: dict) -> bool:
    needed = index["entries"] * ENTRY_BYTES + 8192
    return index["bytes"] >= REBUILD_MIN_BYTES and index["bytes"] > REBUILD_BLOAT * needed


class Maintenance(Service):
    name = "maintenance"

    def __init__(self, store: Store, settings: Settings, *, metrics: WorkerMetrics | None = None):
        super().__init__()
        self.store = store
        self.settings = settings
        # Rescue delay is lease + interval: with the default 30 s lease, under 40 s.
        self.rescue_interval = min(5.0, settings.lease_seconds / 6)
        self._next_prune = 0.0
        self.upkeep_every = UPKEEP_EVERY_SECONDS
        self.metrics = metrics

    async def run(self) -> None:
        await self.store.alert_setting_update(failures=self.settings.alert_failures,
                                              window_seconds=self.settings.alert_window)
        while True:
            await self.rescue()
            if time.monotonic() >= self._next_prune:
                await self.prune()
                await self.upkeep()
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
        # Events are kept as long as the failed jobs they mostly tell of.
        while await self.store.notification_prune(seconds=s.retain_failed_seconds, limit=PRUNE_BATCH) == PRUNE_BATCH:
            if self.stopping.is_set():
                break
        # Pipeline runs go once their steps' jobs have gone (each with its own state's retention).
        await self.store.pipeline_run_prune(seconds=min(s.retain_succeeded_seconds, s.retain_failed_seconds,
                                                        s.retain_cancelled_seconds), limit=PRUNE_BATCH)
        await self.store.worker_prune_dead(dead_seconds=max(3600.0, 10 * s.lease_seconds))
        await self.store.queue_exemption_prune()
        await self.store.limit_start_prune()  # rate windows' starts no window counts any more
        if total:
            log.info("jobs.pruned", extra={"count": total})
        return total

    async def upkeep(self) -> list[str]:
        """Vacuum what autovacuum leaves alone, rebuild bloated partial indexes and drop what an
        interrupted rebuild left, if no other process did so in the last ``upkeep_every``
        seconds. Returns what it did (e.g. ``["vacuum jobs", "rebuild jobs_due_idx"]``). A role
        that may not do one of these (not the tables' owner) is told once per round in the log,
        and the rest goes on."""
        if not await self.store.upkeep_claim(self.upkeep_every):
            return []
        steps = [("vacuum", table["name"], self.store.table_vacuum)
                 for table in await self.store.table_upkeep_list(UPKEEP_TABLES) if needs_vacuum(table)]
        for index in await self.store.index_upkeep_list():
            if index["leftover"]:
                steps.append(("drop", index["name"], self.store.index_drop))
            elif needs_rebuild(index):
                steps.append(("rebuild", index["name"], self.store.index_rebuild))
        done = []
        for verb, name, step in steps:
            began = time.perf_counter()
            try:
                await step(name)
            except DatabaseError as exc:
                log.warning("upkeep.failed", extra={"step": verb, "relation": name, "error": str(exc)})
                continue
            done.append(f"{verb} {name}")
            log.info("upkeep.done", extra={"step": verb, "relation": name,
                                           "duration_ms": round((time.perf_counter() - began) * 1000, 1)})
        return done
