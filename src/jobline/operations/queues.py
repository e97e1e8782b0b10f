"""Queues: their depth and throughput, and pausing them. A paused queue's jobs stay pending and
no worker claims them (0016_queue_pauses.sql) until it is resumed; schedules keep adding jobs to
it, and the operator's "run now" of one job still runs it. Anyone lists the queues of their own
jobs; pausing stops every owner's work, so it is the service's."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..auth import Principal
from ..db.store import Store
from ..job import MAX_QUEUE_LENGTH, check_name
from . import policy
from .jobs import failure_rate

MAX_REASON_LENGTH = 500


class Queues:
    def __init__(self, store: Store):
        self.store = store

    async def list(self, caller: Principal, *, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """Each queue with jobs of the caller's (and, for the service, each paused queue):
        waiting, pending (and due) and running now, the jobs that succeeded and failed in the last
        hour with the failure rate, and whether it is paused (since when, why). A user never
        learns the names of queues that hold none of their jobs."""
        since = (now or dt.datetime.now(dt.timezone.utc)) - dt.timedelta(hours=1)
        counts = {row["queue"]: row for row in await self.store.job_count_queues(since=since,
                                                                                  owner=policy.scope(caller))}
        pauses = {row["queue"]: row for row in await self.store.queue_pause_list()}
        out = []
        names = counts.keys() | pauses.keys() if caller.is_service else counts.keys()
        for name in sorted(names):
            row = counts.get(name) or {"queue": name, "waiting": 0, "pending": 0, "due": 0, "running": 0,
                                       "succeeded": 0, "failed": 0}
            row.pop("oldest_due_seconds", None)  # for worker metrics (runtime/metrics.py); not listed
            pause = pauses.get(name)
            out.append({**row, "failure_rate": failure_rate(row["succeeded"], row["failed"]),
                        "paused": pause is not None, "paused_at": pause and pause["paused_at"],
                        "pause_reason": pause and pause["reason"]})
        return out

    async def pause(self, caller: Principal, queue: str, reason: str | None = None) -> dict[str, Any]:
        """Pause ``queue`` (again: only the reason changes); workers stop claiming its jobs at
        their next claim. A queue with no jobs yet may be paused."""
        policy.check_service(caller, "pausing a queue")
        check_name(queue, "queue", MAX_QUEUE_LENGTH)
        if reason is not None:
            check_name(reason, "reason", MAX_REASON_LENGTH)
        row = await self.store.queue_pause(queue, reason)
        return {"queue": row["queue"], "paused": True, "paused_at": row["paused_at"], "pause_reason": row["reason"]}

    async def resume(self, caller: Principal, queue: str) -> dict[str, Any]:
        """Resume ``queue``: idle workers are woken and claim its due jobs at once. Resuming a
        queue that is not paused changes nothing (``was_paused`` says which)."""
        policy.check_service(caller, "resuming a queue")
        check_name(queue, "queue", MAX_QUEUE_LENGTH)
        was_paused = await self.store.queue_resume(queue)
        return {"queue": queue, "paused": False, "was_paused": was_paused}


