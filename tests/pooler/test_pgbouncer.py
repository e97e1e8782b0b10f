"""jobline through a real PgBouncer in transaction mode (tests/pooler_support.py): migrate, a
worker whose pool goes through the pooler while its LISTEN connection is direct, a pooler restart
mid-run, and a listener put behind the pooler by mistake (which must say so, once).

Every worker here has JOBLINE_PREPARED_STATEMENTS=off and JOBLINE_WORKER_SYNCHRONOUS_COMMIT=on,
as docs/howto/deploy.md says: PgBouncer 1.18 refuses the `options` startup parameter that the
worker's asynchronous-commit pool would send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile

import pytest

from apps.core import create_ledger
from conftest import eventually, start_jobline
from jobline.db.store import JOBS_CHANNEL, Store
from jobline.runtime.notifier import Notifier
from pooler_support import PgBouncer

pytestmark = pytest.mark.timeout(120)

POOLED = {"JOBLINE_PREPARED_STATEMENTS": "off", "JOBLINE_WORKER_SYNCHRONOUS_COMMIT": "on"}


@pytest.fixture
def pgbouncer(pg_server_url):
    bouncer = PgBouncer(pg_server_url)
    bouncer.start()
    yield bouncer
    bouncer.close()


@pytest.fixture
def log_file():
    """A worker's output (a long run must not block on a full pipe)."""
    handle = tempfile.NamedTemporaryFile("w+", prefix="jobline-worker-", suffix=".log", delete=False)
    yield handle
    handle.close()
    os.unlink(handle.name)


def start_worker(processes, url, output, **env):
    process = start_jobline(["--app", "apps.core:app", "--log-format", "json", "worker"], url, output=output,
                            **{**POOLED, **env})
    processes.append(process)
    return process


def events(output) -> list[dict]:
    output.flush()
    with open(output.name) as f:
        return [json.loads(line) for line in f if line.startswith("{")]


def stop(process) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def listening(sql) -> bool:
    """A session of this database is LISTENing (its last statement was a LISTEN or the check)."""
    return sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
               "AND (query LIKE 'LISTEN %%' OR query = 'SELECT 1') AND pid <> pg_backend_pid()")[0][0] > 0


async def pickups(sql, count: int) -> list[float]:
    """Seconds from each enqueue to its handler's start, one job at a time."""
    seconds = []
    for _ in range(count):
        job_id = sql("SELECT jobline.enqueue('work')")[0][0]
        await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0] == "succeeded",
                         timeout=60)
        seconds.append(sql("SELECT extract(epoch FROM l.started_at - j.created_at)::float FROM ledger l "
                           "JOIN jobline.jobs j ON j.id = l.job_id WHERE l.job_id = %s", [job_id])[0][0])
    return seconds


def test_db_migrate_works_through_the_pooler(empty_db_url, pgbouncer, sql):
    pooled = pgbouncer.url(empty_db_url)
    for _ in range(2):  # the second run finds nothing to do
        process = start_jobline(["db", "migrate"], pooled, **POOLED)
        output = process.communicate(timeout=60)[0]
        assert process.returncode == 0, output
    status = start_jobline(["db", "status", "--json"], pooled, **POOLED)
    output = status.communicate(timeout=60)[0]
    assert status.returncode == 0 and '"applied_at": null' not in output, output


async def test_worker_through_the_pooler_with_a_direct_listener_is_woken_by_notify(
        db_url, pgbouncer, sql, processes, log_file):
    create_ledger(db_url)
    # A 30 s poll: only a notification can explain a pickup within a second.
    worker = start_worker(processes, pgbouncer.url(db_url), log_file, JOBLINE_LISTEN_DATABASE_URL=db_url,
                          JOBLINE_POLL_INTERVAL="30")
    await eventually(lambda: listening(sql), timeout=30)
    seconds = await pickups(sql, 10)
    print(f"pickup through PgBouncer, direct listener: max {max(seconds) * 1000:.0f} ms, "
          f"median {sorted(seconds)[5] * 1000:.0f} ms")
    # Far under the 30 s poll: a notification woke it (not a speed limit: under load a pickup
    # may take seconds).
    assert max(seconds) < 15.0, seconds

    # A drain: every job succeeds at its first attempt, and nothing is logged at WARNING or above.
    sql("SELECT jobline.enqueue('work') FROM generate_series(1, 500)")
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status <> 'succeeded'")[0][0] == 0,
                     timeout=60)
    assert sql("SELECT count(*) FROM jobline.attempts WHERE outcome <> 'succeeded'")[0][0] == 0
    assert sql("SELECT count(*), count(DISTINCT job_id) FROM ledger") == [(510, 510)]
    stop(worker)
    logged = events(log_file)
    assert [e for e in logged if e["level"] in ("warning", "error", "critical")] == [], logged


async def test_a_pooler_restart_mid_run_loses_no_job(db_url, pgbouncer, sql, processes, log_file):
    create_ledger(db_url)
    start_worker(processes, pgbouncer.url(db_url), log_file, JOBLINE_LISTEN_DATABASE_URL=db_url,
                 JOBLINE_POLL_INTERVAL="1", JOBLINE_CONCURRENCY="20")
    ids = [row[0] for row in sql("SELECT jobline.enqueue('work', '{\"seconds\": 0.2}') "
                                 "FROM generate_series(1, 400)")]
    await eventually(lambda: sql("SELECT count(*) FROM ledger")[0][0] >= 50, timeout=30)
    pgbouncer.restart()  # SIGTERM: every client connection is cut, mid-transaction or not
    assert sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'")[0][0] < len(ids)  # truly mid-run
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'")[0][0] == len(ids),
                     timeout=90)
    assert sql("SELECT count(DISTINCT job_id) FROM ledger WHERE finished_at IS NOT NULL")[0][0] == len(ids)


async def test_a_listener_behind_the_pooler_says_so_once_and_polling_still_runs_jobs(
        db_url, pgbouncer, sql, processes, log_file):
    create_ledger(db_url)
    # No JOBLINE_LISTEN_DATABASE_URL: the LISTEN goes through the pooler, and is never heard.
    worker = start_worker(processes, pgbouncer.url(db_url), log_file, JOBLINE_POLL_INTERVAL="1")
    await eventually(lambda: any(e["event"] == "listener.deaf" for e in events(log_file)), timeout=60)
    seconds = await pickups(sql, 10)
    print(f"pickup through PgBouncer, listener behind it too (1 s poll): max {max(seconds) * 1000:.0f} ms, "
          f"median {sorted(seconds)[5] * 1000:.0f} ms")
    # Those ten pickups took several seconds, so several health checks ran on the listener's
    # connection through the pooler: none may fail (nothing is prepared on it).
    stop(worker)
    logged = events(log_file)
    assert [e["event"] for e in logged if e["level"] in ("warning", "error", "critical")] == ["listener.deaf"], logged
    assert "JOBLINE_LISTEN_DATABASE_URL" in json.dumps(logged)


async def test_the_listeners_backoff_starts_afresh_after_each_successful_connection(db_url, pgbouncer, caplog):
    # The listener goes through the pooler here only because stopping the pooler is an outage
    # that keeps its address (this test does not need it to hear anything).
    caplog.set_level(logging.DEBUG, logger="jobline.runtime.notifier")
    store = Store(db_url, listen_url=pgbouncer.url(db_url), prepared_statements=False)
    await store.open()
    notifier = Notifier(store, {JOBS_CHANNEL: asyncio.Event()}, check_every=0.2)
    notifier.start()

    def retries() -> list[float]:
        return [r.retry_in_s for r in caplog.records if r.msg in ("listener.disconnected", "listener.retrying")]

    try:
        for _ in range(2):  # two outages, each long enough for the backoff to grow
            await asyncio.wait_for(notifier.proven.wait(), timeout=10)  # a connection that worked
            before = len(retries())
            pgbouncer.stop()
            await eventually(lambda: len(retries()) >= before + 5, timeout=20)  # noqa: B023
            pgbouncer.start()
        await asyncio.wait_for(notifier.connected.wait(), timeout=10)
    finally:
        await notifier.stop()
        await store.close()
    assert [r.retry_in_s for r in caplog.records if r.msg == "listener.disconnected"] == [0.05, 0.05]
