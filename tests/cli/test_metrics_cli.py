"""`jobline worker --metrics-port`: a real worker process, scraped over HTTP."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from apps.core import create_ledger
from conftest import eventually, start_jobline

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, frozenset], float] | None:
    """Every sample, keyed by (name, labels); None while the port does not answer."""
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    except httpx.TransportError:
        return None
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def enqueue(sql, function: str, payload: str = "{}", **options) -> int:
    args = "".join(f", {k} => %({k})s" for k in options)
    return sql(f"SELECT jobline.enqueue(%(f)s, %(p)s::jsonb{args})", {"f": function, "p": payload, **options})[0][0]


async def test_worker_metrics_count_claims_outcomes_rescues_and_report_queues(db_url, sql, processes):
    create_ledger(db_url)
    for _ in range(2):
        enqueue(sql, "work")
    enqueue(sql, "flaky", '{"succeed_on": 2}', queue="emails")                  # retried once, then succeeds
    enqueue(sql, "flaky", '{"succeed_on": 99}', queue="emails", max_attempts=1)  # fails for good
    # A job whose worker died: this worker's maintenance rescues it, then runs it.
    sql("""INSERT INTO jobline.jobs (function, queue, status, attempts, worker_id, lease_until, started_at)
           VALUES ('work', 'reports', 'running', 1, 'dead', now() - interval '1 minute', now() - interval '2 minutes')""")
    # A function no process here serves: due for 90 s, it stays pending (depth and age by queue).
    sql("INSERT INTO jobline.jobs (function, queue, run_at) VALUES ('elsewhere', 'held', now() - interval '90 seconds')")

    port = free_port()
    processes.append(start_jobline(["--app", "apps.core:app", "worker", "--metrics-port", str(port)], db_url,
                                   JOBLINE_POLL_INTERVAL="0.1", JOBLINE_LEASE_SECONDS="6"))
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status IN ('succeeded', 'failed')")[0][0] == 5,
                     timeout=30)

    def settled():
        samples = scrape(port)
        finished = samples and sum(v for (name, _), v in samples.items() if name == "jobline_worker_job_outcomes_total")
        return samples if finished == 6 else None  # 5 final outcomes and 1 retry

    samples = await eventually(settled, timeout=10)
    claimed = "jobline_worker_jobs_claimed_total"
    assert (sample(samples, claimed, function="work", queue="default"),
            sample(samples, claimed, function="flaky", queue="emails"),
            sample(samples, claimed, function="work", queue="reports")) == (2, 3, 1)
    outcomes = "jobline_worker_job_outcomes_total"
    assert {(dict(labels)["function"], dict(labels)["queue"], dict(labels)["outcome"]): value
            for (name, labels), value in samples.items() if name == outcomes} == {
        ("work", "default", "succeeded"): 2, ("flaky", "emails", "retried"): 1, ("flaky", "emails", "succeeded"): 1,
        ("flaky", "emails", "failed"): 1, ("work", "reports", "succeeded"): 1}
    assert sample(samples, "jobline_worker_jobs_rescued_total", function="work", queue="reports") == 1
    assert sample(samples, "jobline_worker_claim_duration_seconds_count") >= 4
    assert sample(samples, "jobline_worker_claim_duration_seconds_sum") > 0
    assert sample(samples, "jobline_worker_job_duration_seconds_count", function="flaky") == 3
    assert sample(samples, "jobline_worker_job_duration_seconds_count", function="work") == 3
    assert sample(samples, "jobline_worker_job_duration_seconds_bucket", function="work", le="+Inf") == 3
    assert sample(samples, "jobline_queue_depth", queue="held") == 1
    assert sample(samples, "jobline_queue_pending", queue="held") == 1
    assert 90 <= sample(samples, "jobline_queue_oldest_pending_age_seconds", queue="held") < 150
    assert sample(samples, "jobline_queue_depth", queue="emails") is None  # no live job there any more

    assert httpx.get(f"http://127.0.0.1:{port}/elsewhere").status_code == 404


async def test_a_taken_metrics_port_fails_in_one_line(db_url, processes):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_jobline(["--app", "apps.core:app", "worker", "--metrics-port", str(port)], db_url)
        processes.append(process)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 1
    assert output.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (is another worker using this "
        "--metrics-port? choose another one per worker on a machine)"]


async def test_metrics_port_and_host_come_from_the_environment(db_url, processes):
    port = free_port()
    processes.append(start_jobline(["--app", "apps.core:app", "worker"], db_url,
                                   JOBLINE_METRICS_PORT=str(port), JOBLINE_METRICS_HOST="127.0.0.1"))
    samples = await eventually(lambda: scrape(port), timeout=30)
    assert sample(samples, "jobline_worker_claim_duration_seconds_count") is not None


def test_metrics_port_is_refused_with_remote(db_url):
    process = start_jobline(["--app", "apps.core:app", "worker", "--remote", "http://127.0.0.1:9", "--token", "t",
                             "--metrics-port", str(free_port())], db_url)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "--metrics-port cannot be used with --remote" in output
