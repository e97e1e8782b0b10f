"""Seed 002's weekly adapter health check, ported by renaming `cron.` and `net.` to `jobline.`,
against a local stand-in for the Edge Function that answers 503.

The command succeeds at once (it queues an HTTP call); the call then fails five times. The run
must say so wherever it is shown: `running` in jobline.job_run_details while the call is in
flight or waiting for a retry, then `failed` with the call's status and error, in
job_run_details, `jobline cron ls`, GET /api/schedules and jobline.scheduled_tasks. With an
endpoint that answers 200 the same run ends `succeeded`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys

import httpx
import psycopg
import pytest
from asgi_server import Server
from conftest import eventually
from receiver import Receiver, Reply
from role_support import roles_of

from jobline import App
from jobline.runtime.scheduler import Scheduler

pytestmark = pytest.mark.timeout(120)
UTC = dt.timezone.utc
SERVICE_KEY = "svc_seed_002_test_key_0123456789abcdef"

# Seed 002, section 1, with `cron.` and `net.` renamed and its two placeholders filled in (the
# seed asks for that: <YOUR_SUPABASE_FUNCTIONS_URL>, <YOUR_SUPABASE_SERVICE_ROLE_KEY>).
WEEKLY_CHECK = """
SELECT jobline.schedule(
  'weekly-adapter-check', -- Job name (must be unique)
  '0 3 * * SUN',          -- Cron schedule: At 03:00 on Sunday
  $$
  SELECT jobline.http_post(
    url:='{functions_url}/adapter-health',
    headers:='{{"Content-Type": "application/json", "Authorization": "Bearer service-role-key"}}', -- Securely call the function
    body:='{{}}'::jsonb
  );
  $$
);"""
SUNDAY_3AM = dt.datetime(2026, 3, 29, 3, 0, tzinfo=UTC)


async def retry_now(db_url: str) -> None:
    """Make every HTTP call that waits for its next attempt due now (the backoff is seconds)."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while True:
            await conn.execute("""
                WITH due AS (UPDATE jobline.jobs SET run_at = now()
                              WHERE function = 'http' AND status = 'pending' AND attempts > 0 AND run_at > now()
                             RETURNING id)
                SELECT pg_notify('jobline_jobs', '') FROM due""")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def worker(settings):
    app = App(settings=dataclasses.replace(settings, http_allow="127.0.0.1", concurrency=4))
    async with app:
        w = await app.worker_async(scheduler=False)  # the test fires the tick itself
        task = asyncio.create_task(w.run(handle_signals=False))
        hurry = asyncio.create_task(retry_now(settings.database_url))
        try:
            yield app
        finally:
            hurry.cancel()
            w.request_stop()
            await asyncio.gather(task, hurry, return_exceptions=True)


def cron_ls(db_url: str) -> list[dict]:
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_LOG_LEVEL": "warning"}
    done = subprocess.run([sys.executable, "-m", "jobline", "cron", "ls", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def api_schedules(settings) -> list[dict]:
    server = Server(dataclasses.replace(settings, service_key=SERVICE_KEY)).start()
    try:
        reply = httpx.get(f"{server.url}/api/schedules", headers={"Authorization": f"Bearer {SERVICE_KEY}"}, timeout=30)
    finally:
        server.stop()
    assert reply.status_code == 200, reply.text
    return reply.json()["schedules"]


async def tick_and_call(app_store, sql, receiver: Receiver) -> int:
    sql(WEEKLY_CHECK.format(functions_url=receiver.url("").rstrip("/")))
    sql("UPDATE jobline.schedules SET changed_at = %s", [SUNDAY_3AM - dt.timedelta(days=1)])
    await Scheduler(app_store, asyncio.Event()).tick(now=SUNDAY_3AM + dt.timedelta(seconds=1))
    [(job_id,)] = sql("SELECT job_id FROM jobline.schedule_runs")
    return job_id


async def test_seed_002_health_check_against_a_503_endpoint_fails_everywhere_it_is_shown(store, sql, settings,
                                                                                        db_url):
    def details():
        return sql("SELECT status, return_message, end_time IS NOT NULL FROM jobline.job_run_details")[0]

    # The endpoint holds the second attempt until the test has seen the run `running`.
    with Receiver(default=Reply(503, {"error": "adapter registry unavailable"})) as receiver:
        job_id = await tick_and_call(store, sql, receiver)
        async with worker(settings):
            await eventually(lambda: len(receiver.requests) >= 1, timeout=30)
            status, message, ended = await eventually(
                lambda: (d := details())[0] == "running" and "not finished" in d[1] and d, timeout=30)
            assert message == "SELECT 1; 1 job(s) it queued not finished yet" and not ended
            await eventually(lambda: details()[0] == "failed", timeout=60)
        assert len(receiver.requests) == 5
        assert receiver.requests[0].path == "/adapter-health"

    [(call_id,)] = sql("SELECT id FROM jobline.jobs WHERE parent_id = %s", [job_id])
    status, message, ended = details()
    assert (status, ended) == ("failed", True)
    assert message.startswith(f"http job {call_id} failed after 5 attempt(s): ")
    assert "HTTP 503 Service Unavailable" in message
    # The parent itself did succeed; its task is failed because of the call it queued.
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id]) == [("succeeded",)]
    assert sql("SELECT id, status FROM jobline.scheduled_tasks ORDER BY id") == [(job_id, "failed"),
                                                                                (call_id, "failed")]
    [listed] = cron_ls(settings.database_url)
    assert listed["last_run"]["outcome"] == "failed" and "HTTP 503" in listed["last_run"]["last_error"]
    [shown] = api_schedules(settings)
    assert shown["last_run"]["outcome"] == "failed" and "HTTP 503" in shown["last_run"]["last_error"]


async def test_seed_002_health_check_against_a_healthy_endpoint_succeeds(store, sql, settings):
    with Receiver(default=Reply(200, {"adapters": 12, "healthy": 12})) as receiver:
        job_id = await tick_and_call(store, sql, receiver)
        async with worker(settings):
            await eventually(lambda: sql("SELECT status FROM jobline.job_run_details")[0][0] == "succeeded",
                             timeout=30)
    assert sql("SELECT status, return_message FROM jobline.job_run_details") == [("succeeded", "SELECT 1")]
    assert sql("SELECT status FROM jobline.scheduled_tasks WHERE id = %s", [job_id]) == [("completed",)]
    [listed] = cron_ls(settings.database_url)
    assert listed["last_run"]["outcome"] == "succeeded"


async def test_seed_002_health_check_scheduled_by_a_plain_role_runs_as_it_and_follows_its_call(db_url, store, sql,
                                                                                                settings):
    """The same check made by a role with nothing but USAGE on jobline: its command and its call
    act for it, and its run follows the call it queued."""
    with roles_of(db_url) as roles, Receiver(default=Reply(503, {"error": "down"})) as receiver:
        checker = roles.make("checker")
        as_checker = roles.sql(checker)
        as_checker(WEEKLY_CHECK.format(functions_url=receiver.url("").rstrip("/")))
        sql("UPDATE jobline.schedules SET changed_at = %s", [SUNDAY_3AM - dt.timedelta(days=1)])
        await Scheduler(store, asyncio.Event()).tick(now=SUNDAY_3AM + dt.timedelta(seconds=1))
        async with worker(settings):
            await eventually(lambda: as_checker("SELECT status FROM jobline.job_run_details")[0][0] == "failed",
                             timeout=60)
        assert len(receiver.requests) == 5
        [(job_id,)] = sql("SELECT job_id FROM jobline.schedule_runs")
        assert sql("SELECT function, username, parent_id FROM jobline.jobs ORDER BY id") == [
            ("sql", checker, None), ("http", checker, job_id)]
        [(message,)] = as_checker("SELECT return_message FROM jobline.job_run_details")
        assert "failed after 5 attempt(s)" in message and "HTTP 503" in message
