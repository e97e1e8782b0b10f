"""Crash and signal claims, proven with real worker processes (STYLE.md section 6)."""

from __future__ import annotations

import signal
import time

import pytest

from apps.core import create_ledger
from conftest import eventually, start_jobline

pytestmark = pytest.mark.timeout(90)

WORKER = ["--app", "apps.core:app", "worker"]


def start(processes, db_url, *args, **env):
    process = start_jobline([*WORKER, *args], db_url, **{"JOBLINE_POLL_INTERVAL": "0.1", **env})
    processes.append(process)
    return process


def enqueue(sql, function, payload="{}", max_attempts=3) -> int:
    return sql("SELECT jobline.enqueue(%s, %s::jsonb, max_attempts => %s)", [function, payload, max_attempts])[0][0]


async def test_kill_9_mid_job_leads_to_exactly_one_later_success(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "work", '{"seconds": 30, "slow_on": [1]}')
    first = start(processes, db_url, "--lease", "2")
    await eventually(lambda: sql("SELECT count(*) FROM ledger WHERE job_id = %s", [job_id])[0][0] == 1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)

    start(processes, db_url, "--lease", "2")
    await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "succeeded",
                     timeout=30)
    finished = sql("SELECT attempt FROM ledger WHERE job_id = %s AND finished_at IS NOT NULL", [job_id])
    assert finished == [(2,)]
    assert sql("SELECT attempt, outcome FROM jobline.attempts WHERE job_id = %s ORDER BY attempt", [job_id]) == [
        (1, "lost"), (2, "succeeded")]


async def test_frozen_worker_late_completion_is_rejected(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "work", '{"seconds": 3, "slow_on": [1]}')
    frozen = start(processes, db_url, "--lease", "1")
    await eventually(lambda: sql("SELECT count(*) FROM ledger WHERE job_id = %s", [job_id])[0][0] == 1)
    frozen.send_signal(signal.SIGSTOP)
    try:
        rescuer = start(processes, db_url, "--lease", "1")
        await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "succeeded",
                         timeout=30)
    finally:
        frozen.send_signal(signal.SIGCONT)
    # Awake again, the frozen worker either finishes its handler and reports (refused: the job
    # is no longer its) or learns at its next heartbeat that the lease is gone and stops the
    # handler. Either way nothing it does may change the job. Stop it to see what it did.
    frozen.send_signal(signal.SIGTERM)
    output = frozen.communicate(timeout=30)[0]
    assert "job.report_rejected" in output or "job.lease_lost" in output, output
    result = sql("SELECT result, attempts FROM jobline.jobs WHERE id = %s", [job_id])[0]
    assert result == ({"pid": rescuer.pid, "attempt": 2}, 2)
    assert sql("SELECT attempt, outcome FROM jobline.attempts WHERE job_id = %s ORDER BY attempt", [job_id]) == [
        (1, "lost"), (2, "succeeded")]


async def test_sigterm_lets_the_running_job_finish(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "work", '{"seconds": 1}')
    worker = start(processes, db_url, "--grace", "10", "--concurrency", "1")
    await eventually(lambda: sql("SELECT count(*) FROM ledger WHERE job_id = %s", [job_id])[0][0] == 1)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "succeeded"


async def test_sigterm_hands_back_a_job_that_outlives_the_grace_period(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "work", '{"seconds": 30}')
    worker = start(processes, db_url, "--grace", "1", "--concurrency", "1")
    await eventually(lambda: sql("SELECT count(*) FROM ledger WHERE job_id = %s", [job_id])[0][0] == 1)
    began = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=25) == 0
    assert time.monotonic() - began < 25  # well before the job's 30 s: it was handed back
    assert sql("SELECT status, attempts, worker_id FROM jobline.jobs WHERE id = %s", [job_id]) == [
        ("pending", 0, None)]


async def test_retries_follow_the_backoff(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "flaky", '{"succeed_on": 3}')
    start(processes, db_url, JOBLINE_POLL_INTERVAL="0.02")
    await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "succeeded",
                     timeout=20)
    starts = [row[0] for row in sql("SELECT started_at FROM ledger WHERE job_id = %s ORDER BY attempt", [job_id])]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    # base 0.5 s, factor 2, jitter 10 %: 0.45-0.55 s then 0.9-1.1 s, plus claim latency, which a
    # busy machine stretches (so the upper bounds are loose; the lower ones are the backoff's).
    assert 0.45 <= gaps[0] <= 0.55 + 2, gaps
    assert 0.9 <= gaps[1] <= 1.1 + 2, gaps
    errors = sql("SELECT attempt, outcome, error, traceback FROM jobline.attempts WHERE job_id = %s ORDER BY attempt",
                 [job_id])
    assert [(a, o) for a, o, _, _ in errors] == [(1, "failed"), (2, "failed"), (3, "succeeded")]
    assert "failing attempt 1 on purpose" in errors[0][2] and "Traceback" not in errors[0][2]
    assert "Traceback (most recent call last)" in errors[0][3] and errors[2][3] is None


async def test_timeout_counts_as_a_failed_attempt(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "sleepy", max_attempts=2)
    start(processes, db_url)
    await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "failed",
                     timeout=20)
    assert sql("SELECT attempt, outcome FROM jobline.attempts WHERE job_id = %s ORDER BY attempt", [job_id]) == [
        (1, "timeout"), (2, "timeout")]
    assert "timed out after 0.5 s" in sql("SELECT last_error FROM jobline.jobs WHERE id = %s", [job_id])[0][0]


async def test_heartbeat_keeps_a_long_job_from_being_rescued(db_url, sql, processes):
    create_ledger(db_url)
    job_id = enqueue(sql, "work", '{"seconds": 3}')
    start(processes, db_url, "--lease", "1")  # heartbeat every 1/3 s; the job runs three leases long
    start(processes, db_url, "--lease", "1")  # a second worker whose rescuer would take it over
    await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "succeeded",
                     timeout=20)
    assert sql("SELECT attempt FROM ledger WHERE job_id = %s", [job_id]) == [(1,)]
    assert sql("SELECT outcome FROM jobline.attempts WHERE job_id = %s", [job_id]) == [("succeeded",)]
