"""RemoteWorker in this process, with its Client's endpoint down so that every claim and report
goes through the database fallback: the worker loop itself (execution semantics, reports,
heartbeats, lost leases, shutdown) on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from apps.remote import app as remote_app
from conftest import eventually
from jobline import Client, ConfigError, FunctionNotFound
from jobline.client.remote_worker import RemoteWorker
from jobline.runtime.registry import Registry
from remote_support import SERVICE_KEY, auth_settings, closed_url  # noqa: F401


def enqueue(sql, function: str, payload: str = "{}", owner: str | None = None, **options) -> int:
    args = "".join(f", {k} => %({k})s" for k in options)
    return sql(f"SELECT jobline.enqueue(%(f)s, %(p)s::jsonb, owner => %(owner)s{args})",
               {"f": function, "p": payload, "owner": owner, **options})[0][0]


def job(sql, job_id: int) -> tuple:
    return sql("SELECT status, attempts, result, last_error FROM jobline.jobs WHERE id = %s", [job_id])[0]


@pytest.fixture
async def remote(db_url, auth_settings):
    """Start a RemoteWorker of tests/apps/remote.py in this process; stopped at the end."""
    started: list[tuple[RemoteWorker, asyncio.Task]] = []

    async def start(**options) -> RemoteWorker:
        # A 10 s lease (the shortest allowed): heartbeats every 3.3 s.
        settings = dataclasses.replace(auth_settings, remote_lease_seconds=10)
        client = Client(closed_url(), SERVICE_KEY, db_url, settings=settings)
        worker = RemoteWorker(client, remote_app.registry, **{"concurrency": 4, "grace_seconds": 5, **options})
        started.append((worker, asyncio.create_task(worker.run(handle_signals=False))))
        return worker

    yield start
    for worker, run in started:
        worker.request_stop()
        await asyncio.wait_for(run, 15)
        await worker.client.close_async()


async def test_tasks_run_with_the_executors_semantics_and_are_reported(remote, sql):
    ids = {
        "echo": enqueue(sql, "remote-echo", '{"n": 1}'),
        "sync": enqueue(sql, "remote-sync"),
        "flaky": enqueue(sql, "remote-flaky", '{"succeed_on": 3}', max_attempts=4),
        "fail": enqueue(sql, "remote-fail"),
        "retry_in": enqueue(sql, "remote-retry-in", max_attempts=2),
        "db": enqueue(sql, "remote-wants-db", max_attempts=1),
        "builtin": enqueue(sql, "sql", '{"command": "SELECT 1"}'),
        "elsewhere": enqueue(sql, "not-ours"),
    }
    worker = await remote()
    done = ("succeeded", "failed")
    await eventually(lambda: all(job(sql, ids[k])[0] in done for k in ("echo", "sync", "flaky", "fail", "retry_in", "db")),
                     timeout=20)
    status, attempts, result, _ = job(sql, ids["echo"])
    assert (status, attempts, result["echo"], result["attempt"]) == ("succeeded", 1, {"n": 1}, 1)
    assert job(sql, ids["sync"])[0:2] == ("succeeded", 1) and job(sql, ids["sync"])[2]["sync"] is True
    assert job(sql, ids["flaky"])[0:3] == ("succeeded", 3, {"attempt": 3})
    assert job(sql, ids["fail"])[0:2] == ("failed", 1)            # Fail: final at once
    assert job(sql, ids["fail"])[3] == "bad input, do not retry"
    assert job(sql, ids["retry_in"])[0:3] == ("succeeded", 2, {"attempt": 2})
    status, _, _, error = job(sql, ids["db"])
    assert status == "failed" and "runs in a remote worker, which has no database connection" in error
    # Never the built-ins, never a function this App does not register.
    assert job(sql, ids["builtin"])[0:2] == ("pending", 0) and job(sql, ids["elsewhere"])[0:2] == ("pending", 0)
    assert [row[0] for row in sql("SELECT outcome FROM jobline.attempts WHERE job_id = %s ORDER BY attempt",
                                  [ids["flaky"]])] == ["failed", "failed", "succeeded"]
    # The last report's row commits before the worker counts it: wait for the count.
    await eventually(lambda: worker.reported == 9, timeout=5)
    assert worker.client.fallbacks > 0


async def test_a_cancelled_task_loses_its_lease_and_its_handler_is_stopped(remote, sql, store):
    slow = enqueue(sql, "remote-sleep", '{"seconds": 60}')
    worker = await remote()
    await eventually(lambda: job(sql, slow)[0] == "running")
    await store.job_cancel(slow)
    await eventually(lambda: not worker.running, timeout=10)  # the next heartbeat notices
    assert job(sql, slow)[0] == "cancelled"


async def test_shutdown_lets_running_tasks_finish_and_report(remote, sql):
    quick = enqueue(sql, "remote-sleep", '{"seconds": 0.5}')
    worker = await remote(grace_seconds=10)
    await eventually(lambda: job(sql, quick)[0] == "running")
    worker.request_stop()
    await eventually(lambda: job(sql, quick)[0] == "succeeded")


async def test_shutdown_abandons_tasks_after_the_grace_period(remote, sql):
    stuck = enqueue(sql, "remote-sleep", '{"seconds": 60}')
    worker = await remote(grace_seconds=0.2)
    await eventually(lambda: job(sql, stuck)[0] == "running")
    worker.request_stop()
    await eventually(lambda: not worker.running)
    # Not reported: it stays running under its lease until the rescuer hands it out again.
    assert job(sql, stuck)[0:2] == ("running", 1)


def test_a_worker_needs_functions_of_its_own(db_url):
    registry = Registry()
    with pytest.raises(ConfigError, match="registers no functions of its own"):
        RemoteWorker(Client(closed_url(), SERVICE_KEY), registry)
    with pytest.raises(FunctionNotFound):
        RemoteWorker(Client(closed_url(), SERVICE_KEY), remote_app.registry, task_types=["other"])
