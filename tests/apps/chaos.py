"""Test Apps for the random-kill runs (tests/chaos_support.py).

``soak``: one function, ``step``, whose payload says how the job behaves (sleep, fail on early
attempts, depend on other jobs). Every attempt writes a row of the ledger ``soak_ledger`` when
it starts and updates it when the handler ends. Each row carries the run id found in the
job's payload and the database it was written in, so a check never counts rows of another run
or another database.

``ticks``: no job runs; it declares a fast schedule in code, so that every scheduler restarted
during a run reconciles it again.
"""

from __future__ import annotations

import asyncio
import os

import psycopg

from jobline import App

soak = App()

LEDGER = """
CREATE TABLE IF NOT EXISTS soak_ledger (
  run         text        NOT NULL,   -- payload['run']: the token of the run that enqueued the job
  db          text        NOT NULL,   -- current_database() where the handler wrote the row
  job_id      bigint      NOT NULL,
  attempt     int         NOT NULL,
  worker_id   text        NOT NULL,
  pid         int         NOT NULL,
  deps_ok     boolean     NOT NULL,   -- every job in payload['after'] had succeeded at the start
  started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at timestamptz,            -- the handler ended (returned or raised)
  outcome     text                    -- returned | raised
)
"""


def create_ledger(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LEDGER)


# Retries come quickly (the run is short) and the jitter spreads them out.
@soak.function("step", max_attempts=20, backoff_base=0.2, backoff_factor=2, backoff_max=2, backoff_jitter=0.2)
async def step(payload, ctx):
    """Sleeps payload['seconds'], then raises on attempts before payload['fail_before']."""
    store = ctx.require_store()
    after = payload.get("after") or []
    # The ledger goes through the worker's pool, one statement at a time: a job asleep holds no
    # connection, so thirty of them at once do not exhaust a shared server's connections.
    async with store.connection() as conn:
        await conn.execute(
            "INSERT INTO soak_ledger (run, db, job_id, attempt, worker_id, pid, deps_ok)"
            " SELECT %(run)s, current_database(), %(job)s, %(attempt)s, %(worker)s, %(pid)s,"
            "        (SELECT count(*) FROM jobline.jobs WHERE id = ANY(%(after)s::bigint[]) AND status = 'succeeded')"
            "          = cardinality(%(after)s::bigint[])",
            {"run": payload["run"], "job": ctx.job_id, "attempt": ctx.attempt, "worker": ctx.worker_id,
             "pid": os.getpid(), "after": after})
    if payload.get("seconds"):
        await asyncio.sleep(payload["seconds"])
    fails = ctx.attempt < payload.get("fail_before", 0)
    async with store.connection() as conn:
        await conn.execute(
            "UPDATE soak_ledger SET finished_at = clock_timestamp(), outcome = %s"
            " WHERE job_id = %s AND attempt = %s AND worker_id = %s",
            ["raised" if fails else "returned", ctx.job_id, ctx.attempt, ctx.worker_id])
    if fails:
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    return {"attempt": ctx.attempt}


ticks = App()


@ticks.function("tick")
def tick(payload):
    return None  # never runs: the scheduler test starts no worker


# Declared in code: a restarted scheduler reconciles it (unchanged, so its ticks go on).
ticks.schedule("code-every-second", "1 seconds", "tick", overlap="allow")
