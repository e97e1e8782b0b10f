"""Prometheus metrics of a `jobline serve` process (GET /metrics, service credential only).

HTTP and authentication metrics are counted in this process. Job metrics are read from the
database at scrape time (every owner), so any server of a deployment reports the same numbers.
A scrape must stay cheap however large the table: it counts only the live jobs (through their
statuses' partial indexes) and the jobs finished in the last hour (jobs_finished_idx), never
every job. With bench/dashboard_load.sql's 1,000,000 jobs (2,000 live) a scrape's queries took
0.46 s when they counted every job and take 0.04 s now; the live count grows with the backlog,
not with the finished jobs.
The registry is per API instance, not prometheus-client's global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..auth import SERVICE
from ..operations import Operations
from ..runtime.metrics import CONTENT_TYPE, MAX_SERIES, OTHER

__all__ = ["CONTENT_TYPE", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("jobline_http_requests", "HTTP requests answered, by method, route template and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("jobline_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["method", "route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.auth_failures = Counter("jobline_auth_failures", "Refused credentials: unauthenticated (401), "
                                     "forbidden (403) and rate_limited (429)", ["reason"], registry=r)
        self.jobs = Gauge("jobline_jobs", "Waiting, pending and running jobs by function and status",
                          ["function", "status"], registry=r)
        self.oldest_due = Gauge("jobline_oldest_due_pending_seconds",
                                "Age of the oldest pending job that is due (0 when none)", registry=r)
        self.finished = Gauge("jobline_jobs_finished_recently", "Jobs that finished in the last window, by outcome",
                               ["outcome", "window"], registry=r)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(method=method, route=route).observe(seconds)

    async def render(self, ops: Operations) -> bytes:
        stats = await ops.jobs.stats(SERVICE, live_only=True)
        counts: dict[tuple[str, str], int] = {}
        labels: dict[str, str] = {}  # function -> its label, in the order first seen
        for function, by_status in stats["by_function"].items():
            # One series per function up to MAX_SERIES, the rest summed: user-chosen names
            # cannot blow up the series count.
            label = labels.setdefault(function, function if len(labels) < MAX_SERIES else OTHER)
            for status, n in by_status.items():
                counts[(label, status)] = counts.get((label, status), 0) + n
        # No await from here on: concurrent scrapes cannot interleave their clear and sets.
        self.jobs.clear()
        for function in {f for f, _ in counts}:
            for status in stats["by_status"]:
                self.jobs.labels(function=function, status=status).set(counts.get((function, status), 0))
        self.oldest_due.set(stats["oldest_due_pending_seconds"] or 0)
        for window, outcomes in stats["windows"].items():
            for outcome in ("succeeded", "failed"):
                self.finished.labels(outcome=outcome, window=window).set(outcomes[outcome])
        return generate_latest(self.registry)
