"""Test App for remote workers (`jobline worker --remote`): no handler touches the database, so
the job rows themselves (result, attempts, errors) are the oracle of what ran."""

from __future__ import annotations

import asyncio
import os
import time

from jobline import App, Fail, RetryIn

app = App()


@app.function("remote-echo")
async def echo(payload, ctx):
    return {"echo": payload, "attempt": ctx.attempt, "pid": os.getpid()}


@app.function("remote-sync")
def sync_echo(payload):
    time.sleep(payload.get("seconds", 0))
    return {"sync": True, "pid": os.getpid()}


@app.function("remote-flaky", max_attempts=4, backoff_base=0.1, backoff_factor=1, backoff_jitter=0)
async def flaky(payload, ctx):
    if ctx.attempt < payload["succeed_on"]:
        raise RuntimeError(f"failing attempt {ctx.attempt} on purpose")
    return {"attempt": ctx.attempt}


@app.function("remote-fail")
async def fail(payload):
    raise Fail("bad input, do not retry")


@app.function("remote-retry-in", max_attempts=2)
async def retry_in(payload, ctx):
    if ctx.attempt == 1:
        raise RetryIn(0.2, "come back soon")
    return {"attempt": ctx.attempt}


@app.function("remote-sleep", max_attempts=3)
async def sleep(payload, ctx):
    """Sleeps payload['seconds'] on the attempts listed in payload['slow_on'] (default: all)."""
    if ctx.attempt in payload.get("slow_on", [ctx.attempt]):
        await asyncio.sleep(payload["seconds"])
    return {"attempt": ctx.attempt, "pid": os.getpid()}


@app.function("remote-wants-db")
async def wants_db(payload, ctx):
    async with await ctx.connect_async():
        return {"unreachable": True}
