"""Metrics of a worker process (`jobline worker --metrics-port`), in a Prometheus registry of
the worker's own, so two workers in one process never share or clash on a series.

The counts come from what the roles already know: the producer's claims, the completer's
written outcomes, the maintenance role's rescues. They are added once per batch, never with a
database round trip of their own. The queue gauges are the one thing read from the database:
at scrape time, at most every REFRESH_SECONDS (job_count_queues, through the live statuses'
partial indexes, never the finished jobs that are most of the table).

>>> metrics = WorkerMetrics(store)                         # doctest: +SKIP
>>> text = await metrics.render()                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..db.store import Store
from ..errors import DatabaseError
from .executor import Outcome

log = logging.getLogger(__name__)

# The Prometheus text format (0.0.4) that generate_latest writes; /metrics of `jobline serve`
# answers with it too.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Labels with user-chosen values (functions, queues) carry one series each up to this many;
# the rest are summed under OTHER, so the series count stays bounded.
MAX_SERIES = 200
OTHER = "_other"

REFRESH_SECONDS = 5.0
# A scrape waits this long for the queue gauges, then serves the counters without them (a
# Prometheus scrape times out after 10 s by default).
REFRESH_TIMEOUT = 3.0

# An outcome's next status, as the metric's outcome label.
OUTCOMES = {"succeeded": "succeeded", "pending": "retried", "failed": "failed", "cancelled": "cancelled"}

CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
RUN_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class BoundedLabel:
    """Maps a user-chosen value to its label: itself for the first MAX_SERIES values seen,
    OTHER after that (remembered for the life of the process, so a series never changes label)."""

    def __init__(self, limit: int = MAX_SERIES):
        self.limit = limit
        self._seen: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        label = self._seen.get(value)
        if label is None:
            label = self._seen[value] = value if len(self._seen) < self.limit else OTHER
        return label


class WorkerMetrics:
    def __init__(self, store: Store, *, queues: Sequence[str] | None = None):
        self.store = store                      # read only for the queue gauges
        self.queues = set(queues) if queues else None  # None: every queue
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.function = BoundedLabel()
        self.queue = BoundedLabel()
        self.claimed = Counter("jobline_worker_jobs_claimed", "Jobs this worker claimed",
                               ["function", "queue"], registry=r)
        self.outcomes = Counter("jobline_worker_job_outcomes", "Outcomes this worker recorded: succeeded, failed "
                                "(for good), retried (an attempt failed, another follows), cancelled",
                                ["function", "queue", "outcome"], registry=r)
        self.rescued = Counter("jobline_worker_jobs_rescued", "Jobs with an expired lease this worker's "
                               "maintenance took back (from any worker)", ["function", "queue"], registry=r)
        self.claim_seconds = Histogram("jobline_worker_claim_duration_seconds", "Duration of the claim query",
                                       registry=r, buckets=CLAIM_BUCKETS)
        self.run_seconds = Histogram("jobline_worker_job_duration_seconds", "Handler run time of an attempt",
                                     ["function"], registry=r, buckets=RUN_BUCKETS)
        self.depth = Gauge("jobline_queue_depth", "Pending jobs that are due (claimable now), by queue",
                           ["queue"], registry=r)
        self.pending = Gauge("jobline_queue_pending", "Pending jobs, due or not yet, by queue", ["queue"], registry=r)
        self.running = Gauge("jobline_queue_running", "Running jobs, by queue", ["queue"], registry=r)
        self.oldest = Gauge("jobline_queue_oldest_pending_age_seconds",
                            "Age of the queue's oldest due pending job (0 when none)", ["queue"], registry=r)
        self._runs: dict[str, Histogram] = {}  # function label -> its run-time series
        self._refreshed = float("-inf")

    # -- counting (called by the roles, once per batch) ---------------------------------------

    def record_claim(self, jobs: Sequence[tuple], seconds: float) -> None:
        """A claim query that took ``seconds`` and returned ``jobs`` (job_claim_many's tuples)."""
        self.claim_seconds.observe(seconds)
        for (function, queue), n in collections.Counter((job[1], job[5]) for job in jobs).items():
            self.claimed.labels(self.function(function), self.queue(queue)).inc(n)

    def record_outcomes(self, batch: Iterable[Outcome], written: set[int]) -> None:
        """A batch the completer wrote; only the outcomes the database took (``written``) count."""
        counts: collections.Counter = collections.Counter()
        runs = self._runs
        for o in batch:
            function = self.function(o.function)
            run = runs.get(function)
            if run is None:  # labels() is the costly part of an observation: once per function
                run = runs[function] = self.run_seconds.labels(function)
            run.observe(max(0.0, o.finished_at - o.started_at))
            if o.job_id in written:
                counts[function, self.queue(o.queue or ""), OUTCOMES[o.status]] += 1
        for (function, queue, outcome), n in counts.items():
            self.outcomes.labels(function, queue, outcome).inc(n)

    def record_rescues(self, rescued: Iterable[tuple]) -> None:
        """job_rescue_expired's rows: (id, status, function, queue)."""
        for (function, queue), n in collections.Counter((r[2], r[3]) for r in rescued).items():
            self.rescued.labels(self.function(function), self.queue(queue)).inc(n)

    # -- scraping -----------------------------------------------------------------------------

    async def render(self) -> bytes:
        """The Prometheus text of this worker, the queue gauges refreshed if older than
        REFRESH_SECONDS (kept as they were when the database does not answer)."""
        if time.monotonic() - self._refreshed >= REFRESH_SECONDS:
            self._refreshed = time.monotonic()  # before the read: concurrent scrapes make one
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT):
                    await self.refresh()
            except (DatabaseError, TimeoutError) as exc:  # the counters are this process's: still worth serving
                log.warning("metrics.refresh_failed", extra={"error": str(exc).strip() or "the database did not "
                                                             f"answer within {REFRESH_TIMEOUT:g} s"})
        return generate_latest(self.registry)

    async def refresh(self) -> None:
        # since=now: the query's finished-jobs branch reads an empty range of jobs_finished_idx.
        rows = await self.store.job_count_queues(since=dt.datetime.now(dt.timezone.utc))
        totals: dict[str, list[float]] = {}
        for row in rows:
            if self.queues is not None and row["queue"] not in self.queues:
                continue
            t = totals.setdefault(self.queue(row["queue"]), [0, 0, 0, 0.0])
            t[0] += row["due"]
            t[1] += row["pending"]
            t[2] += row["running"]
            t[3] = max(t[3], row["oldest_due_seconds"] or 0.0)
        # No await from here on: a scrape never sees half of the new values.
        for gauge in (self.depth, self.pending, self.running, self.oldest):
            gauge.clear()
        for queue in sorted((self.queues or set()) | totals.keys()):
            due, pending, running, oldest = totals.get(queue, (0, 0, 0, 0.0))
            self.depth.labels(queue).set(due)
            self.pending.labels(queue).set(pending)
            self.running.labels(queue).set(running)
            self.oldest.labels(queue).set(oldest)
