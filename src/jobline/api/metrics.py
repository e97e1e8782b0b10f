"""Prometheus metrics of a `jobline serve` process (GET /metrics, service credential only).

HTTP and authentication metrics are counted in this process. Job metrics are read from the
database at scrape time (every owner), so any server of a deployment reports the same numbers.
The registry is per API instance, not prometheus-client's global one.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..auth import SERVICE
from ..job import JobStatus
from ..operations import Operations

# Job gauges carry one series per function: beyond this many functions the rest are summed
# under function="_other", so user-chosen names cannot blow up the series count.
MAX_FUNCTION_SERIES = 200
OTHER = "_other"


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
        self.jobs = Gauge("jobline_jobs", "Unarchived jobs by function and status", ["function", "status"], registry=r)
        self.oldest_due = Gauge("jobline_oldest_due_pending_seconds",
                                "Age of the oldest pending job that is due (0 when none)", registry=r)
        self.finished = Gauge("jobline_jobs_finished_recently", "Jobs that finished in the last window, by outcome",
                               ["outcome", "window"], registry=r)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(method=method, route=route).observe(seconds)

    async def render(self, ops: Operations) -> bytes:
        stats = await ops.jobs.stats(SERVICE)
        counts: dict[tuple[str, str], int] = {}
        labels: dict[str, str] = {}  # function -> its label, in the order first seen
        for function, by_status in stats["by_function"].items():
            label = labels.setdefault(function, function if len(labels) < MAX_FUNCTION_SERIES else OTHER)
            for status, n in by_status.items():
                counts[(label, status)] = counts.get((label, status), 0) + n
        # No await from here on: concurrent scrapes cannot interleave their clear and sets.
        self.jobs.clear()
        for function in {f for f, _ in counts}:
            for status in JobStatus:
                self.jobs.labels(function=function, status=status.value).set(counts.get((function, status.value), 0))
        self.oldest_due.set(stats["oldest_due_pending_seconds"] or 0)
        for window, outcomes in stats["windows"].items():
            for outcome in ("succeeded", "failed"):
                self.finished.labels(outcome=outcome, window=window).set(outcomes[outcome])
        return generate_latest(self.registry)
