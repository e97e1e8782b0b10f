"""Scheduler: turns cron ticks into jobs, exactly once per schedule and tick.

Any number of schedulers may run (one in every worker by default). Each plans the due
schedules in Python (which ticks run, which were missed, the next tick) and writes each plan
with jobline.fire_schedule, which is fenced on the schedule's state as read: of several
schedulers with the same plan, only the first writes, and a run and its job commit together.
Between ticks it sleeps until the next one is due by the database's clock, or until a
schedule is added or changed (NOTIFY on jobline_schedules).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable

from ..cron import Cron
from ..db.store import Store
from ..errors import InvalidInput
from ..schedule import plan, plan_restart
from .service import Service

log = logging.getLogger(__name__)

BATCH = 100


class Scheduler(Service):
    name = "scheduler"

    def __init__(self, store: Store, wake: asyncio.Event, *, max_sleep: float = 30.0,
                 clock: Callable[[], dt.datetime] | None = None):
        super().__init__()
        self.store = store
        self.wake = wake            # set by the notifier when a schedule is new or changed
        self.max_sleep = max_sleep  # an upper bound, in case a notification is missed
        self.clock = clock          # tests move time with it; None: the database's clock
        self.ticked = asyncio.Event()  # test signal: a pass wrote something

    async def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()  # before looking: a change made during the pass is not lost
            wait = await self.tick()
            await self._sleep(wait)

    async def tick(self, now: dt.datetime | None = None, started_at: dt.datetime | None = None) -> float:
        """One pass: fire every schedule due at ``now`` (the clock's, or the database's), and the
        @restart schedules of the server's start (``started_at``, default the server's own);
        returns how many seconds until the next is due."""
        if now is None and self.clock is not None:
            now = self.clock()
        while True:
            due = await self.store.schedule_list_due(now=now, started_at=started_at, limit=BATCH)
            for row in due:
                try:
                    await self._fire(row)
                except InvalidInput as exc:
                    # The schedule itself is at fault (its job is refused): left as it is, it
                    # would stay due first in line and hold up every other schedule. Pause it,
                    # loudly. (A database outage is a DatabaseError: the service loop retries.)
                    await self._disable(row, exc)
            if len(due) < BATCH:
                break
        wait = await self.store.schedule_next_due(now=now)
        return self.max_sleep if wait is None else min(max(wait, 0.0), self.max_sleep)

    async def _fire(self, row: dict) -> None:
        # SQL validates expressions as this module does; InvalidInput here is the last line of
        # defence, and pauses the schedule (see tick).
        cron = Cron.parse(row["expression"], row["timezone"])
        if cron.restart:
            planned = plan_restart(changed_at=row["changed_at"], started_at=row["started_at"])
        else:
            planned = plan(cron, next_run_at=row["next_run_at"], changed_at=row["changed_at"], now=row["now"],
                           catch_up=row["catch_up"], catch_up_max=row["catch_up_max"])
        written = await self.store.schedule_fire(row, planned)
        for tick_at, status, job_id in written:
            facts = {"schedule_id": row["id"], "schedule": row["name"], "tick_at": tick_at.isoformat()}
            if status == "created":
                log.info("schedule.ticked", extra={**facts, "job_id": job_id})
            elif status == "skipped":
                log.info("schedule.skipped", extra={**facts, "reason": "an earlier run is still live"})
            else:
                log.warning("schedule.missed", extra={**facts, "note": planned.missed_note})
        if written:
            self.ticked.set()

    async def _disable(self, row: dict, exc: Exception) -> None:
        await self.store.schedule_disable(row["id"], row["changed_at"])
        log.error("schedule.disabled", extra={"schedule_id": row["id"], "schedule": row["name"], "error": str(exc),
                                              "fix": "correct it, then `jobline cron resume`"})

    async def _sleep(self, seconds: float) -> None:
        waiter = asyncio.ensure_future(self.wake.wait())
        stopper = asyncio.ensure_future(self.stopping.wait())
        # A little past the due time, so that the database's clock has reached it too.
        await asyncio.wait({waiter, stopper}, timeout=seconds + 0.002, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stopper.cancel()
