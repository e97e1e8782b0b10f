"""Test App for process-level tests. Every handler writes an execution ledger in its own
database (table `ledger`, created by `create_ledger`), at start and at end, in autocommit: the
ledger is the oracle of what ran, when and where."""

from __future__ import annotations

import asyncio
import os

import psycopg

from jobline import App

app = App()

LEDGER = """
CREATE TABLE IF NOT EXISTS ledger (
  job_id bigint, attempt int, pid int, started_at timestamptz DEFAULT clock_timestamp(),
  finished_at timestamptz)
"""


def create_ledger(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(LEDGER)


async def _run_logged(ctx, seconds: float) -> dict:
    async with await ctx.connect_async() as conn:
        await conn.set_autocommit(True)
        await conn.execute("INSERT INTO ledger (job_id, attempt, pid) VALUES (%s, %s, %s)",
                           [ctx.job_id, ctx.attempt, os.getpid()])
        await asyncio.sleep(seconds)
        await conn.execute("UPDATE ledger SET finished_at = clock_timestamp() WHERE job_id = %s AND attempt = %s",
                           [ctx.job_id, ctx.attempt])
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@app.function("work")
async def work(payload, ctx):
    """Sleeps payload['seconds'] (only on the attempts listed in payload['slow_on'], if given)."""
    slow_on = payload.get("slow_on")
    seconds = payload.get("seconds", 0) if slow_on is None or ctx.attempt in slow_on else 0
    return await _run_logged(ctx, seconds)


@app.function("flaky", max_attempts=5, backoff_base=0.5, backoff_factor=2, backoff_jitter=0.1)
async def flaky(payload, ctx):
    """Fails until attempt payload['succeed_on']."""
    await _run_logged(ctx, 0)
    if ctx.attempt < payload["succeed_on"]:
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    return {"attempt": ctx.attempt}


@app.function("sleepy", max_attempts=2, timeout=0.5, backoff_base=0.1)
async def sleepy(payload, ctx):
    return await _run_logged(ctx, 5)
