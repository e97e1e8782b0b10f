"""RemoteWorker in this process, with its Client's endpoint down so that every claim and report
goes through the database fallback: the worker loop itself (execution semantics, reports,
heartbeats, lost leases, shutdown) on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

import httpx
import pytest

from apps.remote import app as remote_app
from conftest import eventually
from jobline import App, Client, ConfigError, FunctionNotFound, InvalidInput, Task, Unauthenticated
from jobline.auth import new_token, token_hash, token_prefix
from jobline.client.remote_worker import RemoteWorker, lease_seconds
from jobline.runtime.registry import Registry
from remote_support import SERVICE_KEY, api_server, auth_settings, clients, closed_url  # noqa: F401


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


# -- against a server: 429s, refused credentials, clock skew ------------------------------------


def gated_app(gate: asyncio.Event) -> App:
    """An App whose 'gated' handler returns once ``gate`` is set, and whose 'poke' handler makes
    one request with a bad token to the URL in its payload (a failed authentication from this
    address) before returning."""
    app = App()

    @app.function("gated")
    async def gated(payload):
        await gate.wait()
        return {"released": True}

    @app.function("poke")
    async def poke(payload):
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{payload['url']}/api/jobs", json={"function": "x"},
                                       headers={"Authorization": "Bearer jl_not-a-token"})
        return {"poked": response.status_code}

    return app


@pytest.fixture
async def running():
    """Run RemoteWorkers in this process: ``start(worker)`` returns its run(); stopped at the end."""
    started: list[tuple[RemoteWorker, asyncio.Task]] = []

    def start(worker: RemoteWorker) -> asyncio.Task:
        started.append((worker, asyncio.create_task(worker.run(handle_signals=False))))
        return started[-1][1]

    yield start
    for worker, run in started:
        worker.request_stop()
        await asyncio.wait([run], timeout=15)
        if run.done() and not run.cancelled():
            run.exception()  # retrieved: a test that expects it has checked it
        await worker.client.close_async()


async def test_a_report_answered_429_is_sent_again_after_retry_after_and_lands(api_server, running, db_url,
                                                                              auth_settings, sql, caplog):
    caplog.set_level(logging.WARNING, logger="jobline.client")
    # One failed authentication puts this address over the limit for 2 s: the report that
    # follows the handler's bad request is answered 429 with Retry-After: 2.
    server = api_server(auth_failure_limit=1, auth_failure_window=2.0)
    job_id = enqueue(sql, "poke", f'{{"url": "{server.url}"}}')
    client = Client(server.url, SERVICE_KEY, db_url, settings=auth_settings)  # a fallback it must not use
    worker = RemoteWorker(client, gated_app(asyncio.Event()).registry, concurrency=1, task_types=["poke"])
    running(worker)
    await eventually(lambda: job(sql, job_id)[0] == "succeeded", timeout=15)
    assert job(sql, job_id)[0:3] == ("succeeded", 1, {"poked": 401})  # run once, reported once
    retried = [r for r in caplog.records if r.getMessage() == "job.report_failed"]
    assert [(r.job_id, r.retry_in_s) for r in retried] == [(job_id, 2.0)]
    assert "too many failed authentications" in retried[0].error
    await eventually(lambda: worker.reported == 1)
    assert client.fallbacks == 0 and client.outage is None  # a 429 is the live server's answer


async def test_a_token_revoked_while_a_task_runs_drops_its_report_and_stops_the_worker(api_server, running, store,
                                                                                      sql, caplog):
    caplog.set_level(logging.WARNING, logger="jobline.client")
    server = api_server()
    token = new_token()
    row = await store.api_token_insert(user_id="alice", name="worker", token_hash=token_hash(token),
                                       prefix=token_prefix(token))
    held, later = enqueue(sql, "gated", owner="alice"), enqueue(sql, "gated", owner="alice")
    gate = asyncio.Event()
    worker = RemoteWorker(Client(server.url, token), gated_app(gate).registry, concurrency=1, task_types=["gated"],
                          grace_seconds=5)
    run = running(worker)
    await eventually(lambda: job(sql, held)[0] == "running")
    await store.api_token_revoke(row["id"])
    gate.set()
    # The report is refused (401): dropped at once, which frees the only slot; the next claim is
    # refused too, and the worker stops saying why.
    with pytest.raises(Unauthenticated, match="expired or been revoked.*jobline tokens create"):
        await asyncio.wait_for(asyncio.shield(run), 15)
    rejected = [r for r in caplog.records if r.getMessage() == "job.report_rejected"]
    assert [(r.levelno, r.job_id) for r in rejected] == [(logging.ERROR, held)]
    assert job(sql, held)[0:2] == ("running", 1)        # left to the rescuer, under its lease
    assert job(sql, later)[0:2] == ("pending", 0)       # never claimed with the refused token
    assert worker.reported == 0 and not worker.running


async def test_heartbeats_follow_the_servers_clock_not_a_skewed_local_one(api_server, running, sql):
    server = api_server()

    class BehindClient(Client):
        """Reads lease_until as a worker whose clock is an hour behind the server's would: an
        hour further away than it is."""

        async def claim_next_task_async(self, task_types=None):
            task = await super().claim_next_task_async(task_types)
            return task and dataclasses.replace(task, lease_until=task.lease_until + dt.timedelta(hours=1))

    job_id = enqueue(sql, "gated")
    gate = asyncio.Event()
    worker = RemoteWorker(BehindClient(server.url, SERVICE_KEY), gated_app(gate).registry, concurrency=1,
                          task_types=["gated"], grace_seconds=5)
    running(worker)
    first = await eventually(lambda: sql("SELECT lease_until FROM jobline.jobs WHERE id = %s AND status = 'running'",
                                         [job_id]))
    # The lease is 10 s: measured against the server's Date, a heartbeat comes within 3.4 s (with
    # the local clock it would be 20 minutes away, and the task lost).
    await eventually(lambda: sql("SELECT lease_until FROM jobline.jobs WHERE id = %s", [job_id]) != first,
                     timeout=5, interval=0.1)
    gate.set()
    await eventually(lambda: job(sql, job_id)[0:2] == ("succeeded", 1))


def test_the_lease_without_a_measured_length_trusts_the_local_clock_for_at_most_the_default():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    task = Task(1, "gated", {}, None, 1, 3, "remote:" + "0" * 32, now + dt.timedelta(seconds=60))
    assert lease_seconds(task, now) == 60
    assert lease_seconds(dataclasses.replace(task, lease_until=now + dt.timedelta(hours=2)), now) == 300


# -- batch claims ---------------------------------------------------------------------------------


async def test_a_worker_claims_its_free_slots_in_one_request_through_the_fallback(remote, sql):
    ids = [enqueue(sql, "remote-echo", f'{{"n": {n}}}') for n in range(6)]
    worker = await remote(concurrency=4)
    await eventually(lambda: all(job(sql, i)[0] == "succeeded" for i in ids), timeout=20)
    # The first claim found 4 free slots: one statement, one lease token for those 4 tasks.
    by_lease = sql("SELECT worker_id, array_agg(job_id ORDER BY job_id) FROM jobline.attempts "
                   "GROUP BY worker_id ORDER BY min(job_id)")
    assert by_lease[0][1] == ids[:4]
    assert sorted(i for _, batch in by_lease for i in batch) == ids  # each run exactly once
    assert (worker.claimed, worker.client.fallbacks > 0) == (6, True)


async def test_a_worker_over_http_claims_a_batch_and_reports_each_task(api_server, running, sql):
    server = api_server()
    ids = [enqueue(sql, "gated") for _ in range(8)]
    gate = asyncio.Event()
    client = Client(server.url, SERVICE_KEY)
    worker = RemoteWorker(client, gated_app(gate).registry, concurrency=5, task_types=["gated"], grace_seconds=5)
    running(worker)
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status = 'running'") == [(5,)])
    # All five slots were filled by one request: one lease token; the other three wait.
    assert sql("SELECT count(DISTINCT worker_id) FROM jobline.jobs WHERE status = 'running'") == [(1,)]
    assert sql("SELECT array_agg(id ORDER BY id) FROM jobline.jobs WHERE status = 'running'") == [(ids[:5],)]
    gate.set()
    await eventually(lambda: all(job(sql, i)[0:3] == ("succeeded", 1, {"released": True}) for i in ids), timeout=15)
    await eventually(lambda: worker.reported == 8)  # counted once the report's answer is read
    assert client.fallbacks == 0


async def test_the_client_claims_a_batch_over_http_and_through_the_fallback_alike(api_server, db_url, auth_settings,
                                                                                 clients, sql):
    server = api_server()
    ids = [enqueue(sql, "gated") for _ in range(5)]
    http = Client(server.url, SERVICE_KEY)
    fallback = Client(closed_url(), SERVICE_KEY, db_url, settings=dataclasses.replace(auth_settings,
                                                                                     remote_lease_seconds=10))
    clients.extend([http, fallback])
    first = await http.claim_next_tasks_async(3, ["gated"])
    rest = await fallback.claim_next_tasks_async(3, ["gated"])
    assert [t.task_id for t in first] == ids[:3] and [t.task_id for t in rest] == ids[3:]
    assert all(t.lease_seconds is not None and 0 < t.lease_seconds <= 10 for t in first + rest)
    assert await http.claim_next_tasks_async(3, ["gated"]) == []
    assert [await http.complete_async(t, {"ok": True}) for t in rest] == ["succeeded", "succeeded"]
    # Batch reports, over HTTP and in the database; a report already made changes nothing.
    assert await http.complete_many_async([(first[0], 1), (rest[0], 2)]) == ["succeeded", "lease_lost"]
    assert await fallback.complete_many_async([(first[1], 3), (first[2], 4)]) == ["succeeded", "succeeded"]
    assert sql("SELECT id, result FROM jobline.jobs ORDER BY id") == [
        (ids[0], 1), (ids[1], 3), (ids[2], 4), (ids[3], {"ok": True}), (ids[4], {"ok": True})]
    with pytest.raises(InvalidInput, match="limit must be a whole number of tasks from 1 to 100"):
        await http.claim_next_tasks_async(0)
