"""Exactly-once claims, concurrent migrations and listener recovery, with real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter

import psycopg
import pytest

from apps.core import create_ledger
from conftest import eventually, start_jobline
from jobline.db import migrate
from jobline.db.store import Store

pytestmark = pytest.mark.timeout(120)


async def test_two_worker_processes_never_run_one_job_twice(db_url, sql, processes):
    create_ledger(db_url)
    sql("SELECT jobline.enqueue('work', '{\"seconds\": 0.002}') FROM generate_series(1, 600)")
    for _ in range(2):
        processes.append(start_jobline(["--app", "apps.core:app", "worker", "--concurrency", "8"], db_url))
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'")[0][0] == 600,
                     timeout=60)
    runs = Counter(job_id for (job_id,) in sql("SELECT job_id FROM ledger"))
    assert len(runs) == 600 and set(runs.values()) == {1}
    pids = {pid for (pid,) in sql("SELECT DISTINCT pid FROM ledger")}
    assert pids == {p.pid for p in processes}, "both workers should have taken part"


def test_ten_processes_migrate_an_empty_database_at_once(empty_db_url):
    env = {**os.environ, "JOBLINE_DATABASE_URL": empty_db_url}
    migrators = [subprocess.Popen([sys.executable, "-m", "jobline", "db", "migrate"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(10)]
    outputs = [m.communicate(timeout=60) for m in migrators]
    assert [m.returncode for m in migrators] == [0] * 10, [err for _, err in outputs]
    # Each migration was applied by exactly one process; the others found it done.
    applied = Counter(line for out, _ in outputs for line in out.splitlines() if line.startswith("applied"))
    expected = migrate.available()
    assert applied == Counter(f"applied {m.version:04d}_{m.name}" for m in expected)
    with psycopg.connect(empty_db_url) as conn:
        versions = [v for (v,) in conn.execute("SELECT version FROM jobline.schema_migrations ORDER BY version")]
    assert versions == [m.version for m in expected]


async def test_sixteen_claimers_never_claim_a_job_twice(db_url, sql):
    sql("INSERT INTO jobline.jobs (function) SELECT 'noop' FROM generate_series(1, 2000)")
    store = Store(db_url, max_size=16)
    await store.open()
    try:
        async def drain(worker: str) -> list[int]:
            claimed = []
            while batch := await store.job_claim_many(worker_id=worker, functions=["noop"], queues=None,
                                                      limit=7, lease_seconds=30):
                claimed.extend(row[0] for row in batch)
            return claimed

        batches = await asyncio.gather(*(drain(f"w{i}") for i in range(16)))
    finally:
        await store.close()
    counts = Counter(job_id for batch in batches for job_id in batch)
    assert len(counts) == 2000 and set(counts.values()) == {1}
    assert sum(1 for batch in batches if batch) > 1


async def test_listener_reconnects_after_its_backend_is_terminated(db_url, sql, processes):
    create_ledger(db_url)
    worker = start_jobline(["--app", "apps.core:app", "worker"], db_url, JOBLINE_POLL_INTERVAL="30")
    processes.append(worker)
    listening = "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%%' AND datname = current_database()"
    (old_pid,) = (await eventually(lambda: sql(listening)))[0]
    sql("SELECT pg_terminate_backend(%s)", [old_pid])
    await eventually(lambda: [row for row in sql(listening) if row[0] != old_pid])

    job_id = sql("SELECT jobline.enqueue('work')")[0][0]
    enqueued = time.monotonic()
    await eventually(lambda: sql("SELECT count(*) FROM ledger WHERE job_id = %s", [job_id])[0][0] == 1, timeout=10)
    assert time.monotonic() - enqueued < 1.0, "pickup should be event-driven, not the 30 s poll"
