"""What the dashboard shows beyond single jobs and schedules: live and recent counts, throughput
over the last hour and day, workers, HTTP calls, a job's dependencies, and when to look again.
Every read takes the caller first and is scoped by policy.py, as the API's are.

Counting a million jobs on every page view would take a quarter of a second, so the counts are
built from what is cheap: waiting, pending and running jobs through their partial indexes, and
finished jobs per time bucket through jobs_finished_idx over the range asked for. An hour that
has ended (more than five minutes ago) no longer changes, so its buckets are kept in memory per
owner, and a page view reads only the current hour from the database.

>>> overview = await ops.activity.overview(caller)         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator
from typing import Any

from ..auth import Principal
from ..db.store import JOBS_CHANNEL, SCHEDULES_CHANNEL, Store
from ..errors import JoblineError
from ..job import Job, JobStatus
from .jobs import Page, failure_rate
from . import policy

LIVE_STATUSES = ("waiting", "pending", "running")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")
LIVE_WORKER_SECONDS = 90.0
HOUR = 3600
FIVE_MINUTES = 300
SETTLE_SECONDS = 300      # an hour is closed (cached) once it ended this long ago
MAX_CACHED_OWNERS = 256


def _floor(moment: dt.datetime, seconds: int) -> dt.datetime:
    epoch = int(moment.timestamp()) // seconds * seconds
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def _empty() -> dict[str, int]:
    return {s: 0 for s in FINISHED_STATUSES}


class Activity:
    def __init__(self, store: Store):
        self.store = store
        # owner (None: every owner) -> {hour start: [(function, status, n)]}, closed hours only.
        self._hours: collections.OrderedDict[str | None, dict[dt.datetime, list]] = collections.OrderedDict()

    # -- counts and throughput ----------------------------------------------------------------

    async def overview(self, caller: Principal, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """What the overview screen shows, for ``caller``'s jobs: counts by status and function
        (waiting, pending and running now; succeeded, failed and cancelled in the last 24 hours),
        finished jobs per 5 minutes over the last hour and per hour over the last day, the failure
        rate of each, the age of the oldest due pending job, the functions with waiting or pending
        jobs that no live worker serves, and (for the service) the live workers."""
        owner = policy.scope(caller)
        now = now or dt.datetime.now(dt.timezone.utc)
        live, (hour_series, day_series, day_by_function), oldest, workers = await asyncio.gather(
            self.store.job_count_live(owner=owner), self._finished(owner, now),
            self.store.job_oldest_due(owner=owner), self.store.worker_list(live_seconds=LIVE_WORKER_SECONDS))
        by_status = {s.value: 0 for s in JobStatus}
        by_function: dict[str, dict[str, int]] = {}
        for function, status, n in live:
            by_status[status] += n
            by_function.setdefault(function, {s.value: 0 for s in JobStatus})[status] += n
        for (function, status), n in day_by_function.items():
            by_status[status] += n
            by_function.setdefault(function, {s.value: 0 for s in JobStatus})[status] += n
        served = {f for w in workers for f in w["functions"]}
        unserved = sorted(f for f, c in by_function.items() if (c["pending"] or c["waiting"]) and f not in served)
        return {
            "owner": owner, "by_status": by_status, "by_function": dict(sorted(by_function.items())),
            "last_hour": hour_series, "last_day": day_series,
            "windows": {"1h": _window(hour_series), "24h": _window(day_series)},
            "oldest_due_pending_seconds": round(oldest, 3) if oldest is not None else None,
            "unserved": unserved,
            "workers": [_worker(w) for w in workers] if caller.is_service else None,
        }

    async def _finished(self, owner: str | None, now: dt.datetime):
        """(12 five-minute buckets, 24 hourly buckets, {(function, status): n} over 24 hours)."""
        hour_now = _floor(now, HOUR)
        first_hour = hour_now - dt.timedelta(hours=23)
        closed_until = _floor(now - dt.timedelta(seconds=SETTLE_SECONDS), HOUR)  # hours before it are closed
        cached = self._cached(owner)
        for hour in [h for h in cached if h < first_hour]:
            del cached[hour]
        missing = [first_hour + dt.timedelta(hours=i) for i in range(24)]
        missing = [h for h in missing if h < closed_until and h not in cached]
        if missing:
            rows = await self.store.job_count_finished(since=missing[0], until=missing[-1] + dt.timedelta(hours=1),
                                                       bucket_seconds=HOUR, owner=owner)
            for hour in missing:
                cached[hour] = []
            for bucket, function, status, n in rows:
                if bucket in cached:
                    cached[bucket].append((function, status, n))
        # The open hours (and the last hour's five-minute buckets) come from the database.
        five_now = _floor(now, FIVE_MINUTES)
        since = min(closed_until, five_now - dt.timedelta(minutes=55))
        recent = await self.store.job_count_finished(since=since, until=now + dt.timedelta(minutes=1),
                                                     bucket_seconds=FIVE_MINUTES, owner=owner)
        fives = {five_now - dt.timedelta(minutes=5 * i): _empty() for i in range(11, -1, -1)}
        hours = {first_hour + dt.timedelta(hours=i): _empty() for i in range(24)}
        by_function: dict[tuple[str, str], int] = collections.Counter()
        for hour, rows in cached.items():
            if hour in hours:
                for function, status, n in rows:
                    hours[hour][status] += n
                    by_function[function, status] += n
        for bucket, function, status, n in recent:
            if bucket in fives:
                fives[bucket][status] += n
            hour = _floor(bucket, HOUR)
            if hour >= closed_until and hour in hours:
                hours[hour][status] += n
                by_function[function, status] += n
        return _series(fives), _series(hours), by_function

    def _cached(self, owner: str | None) -> dict[dt.datetime, list]:
        cached = self._hours.get(owner)
        if cached is None:
            cached = self._hours[owner] = {}
            while len(self._hours) > MAX_CACHED_OWNERS:
                self._hours.popitem(last=False)
        else:
            self._hours.move_to_end(owner)
        return cached

    # -- workers, HTTP calls, dependencies ----------------------------------------------------

    async def workers(self, caller: Principal) -> list[dict[str, Any]]:
        """The live workers (host, pid, functions, queues, last heartbeat, jobs held): the
        operator's machines, so the service's only."""
        policy.check_service(caller, "listing workers")
        return [_worker(w) for w in await self.store.worker_list(live_seconds=LIVE_WORKER_SECONDS)]

    async def http_calls(self, caller: Principal, *, before_id: int | None = None, limit: int = 50) -> Page:
        """Calls of the built-in ``http`` function, newest first: method, URL (as written: secrets
        appear as their ``{{secret:NAME}}`` reference), state, attempts, the response's status and
        latency, and an excerpt of its body (scrubbed of secrets when it was kept) or the error."""
        rows = await self.store.job_list_http(owner=policy.scope(caller), before_id=before_id, limit=limit + 1)
        page = rows[:limit]
        return Page(page, page[-1]["id"] if len(rows) > limit else None)

    async def dependencies(self, caller: Principal, job: Job) -> tuple[list[dict], list[dict]]:
        """The jobs ``job`` depends on and the jobs that depend on it (id, function, status), of
        those the caller sees."""
        owner = policy.scope(caller)
        up = await self.store.job_list_brief(job.depends_on, owner=owner) if job.depends_on else []
        down = await self.store.job_list_dependants(job.id, owner=owner)
        return up, down

    # -- when to look again -------------------------------------------------------------------

    async def changes(self, *, poll_seconds: float = 2.0, debounce_seconds: float = 1.0) -> AsyncIterator[None]:
        """Yield whenever jobs or schedules may have changed, at most once per
        ``debounce_seconds``: on the NOTIFY jobline sends when jobs are added or become due and
        when schedules change, and, since a job's completion sends none, when a cheap marker
        (job_change_marker) moves between polls. What changed is not said: each viewer's page is
        read again, for that viewer, by whoever listens."""
        listener = None
        marker = None
        last = 0.0
        try:
            while True:
                if listener is None:
                    with contextlib.suppress(JoblineError):
                        listener = await self.store.connect_listener([JOBS_CHANNEL, SCHEDULES_CHANNEL])
                notified = False
                if listener is not None:
                    try:
                        async for _ in listener.notifies(timeout=poll_seconds, stop_after=1):
                            notified = True
                    except Exception:  # the connection broke: poll until it is back  # noqa: BLE001
                        with contextlib.suppress(Exception):
                            await listener.close()
                        listener = None
                else:
                    await asyncio.sleep(poll_seconds)
                try:
                    current = await self.store.job_change_marker()
                except JoblineError:
                    continue
                if current != marker or notified:
                    # The first read too: whoever listens rendered before it began following.
                    marker = current
                    wait = last + debounce_seconds - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    last = time.monotonic()
                    yield
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()


def _series(buckets: dict[dt.datetime, dict[str, int]]) -> list[dict[str, Any]]:
    return [{"start": start.isoformat(), **counts} for start, counts in buckets.items()]


def _window(series: list[dict[str, Any]]) -> dict[str, Any]:
    succeeded = sum(b["succeeded"] for b in series)
    failed = sum(b["failed"] for b in series)
    return {"succeeded": succeeded, "failed": failed, "cancelled": sum(b["cancelled"] for b in series),
            "failure_rate": failure_rate(succeeded, failed)}


def _worker(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "hostname": row["hostname"], "pid": row["pid"], "functions": list(row["functions"]),
            "queues": list(row["queues"]), "started_at": row["started_at"], "last_seen_at": row["last_seen_at"],
            "running": row["running"]}
