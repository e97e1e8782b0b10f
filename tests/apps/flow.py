"""Test App for flow control (tests/runtime/test_flow_control.py): its limits are declared in
code, so every worker process records them when it starts (0019_flow_control.sql)."""

from __future__ import annotations

import asyncio

from jobline import App

app = App()

CAPPED = 3          # "capped": at most 3 running at once, across every worker
RATE = (20, 1.0)    # "rated": at most 20 starts in any 1 s


@app.function("capped", concurrency=CAPPED)
async def capped(payload):
    await asyncio.sleep(payload.get("seconds", 0.005))


@app.function("per_user", concurrency=1, limit_per_key=True)
async def per_user(payload):
    await asyncio.sleep(payload.get("seconds", 0.005))


@app.function("rated", rate_limit=RATE)
async def rated(payload):
    return None


@app.function("hold", concurrency=1)
async def hold(payload, ctx):
    """The first attempt of a job with {"stall": true} runs until its worker is killed."""
    if payload.get("stall") and ctx.attempt == 1:
        await asyncio.sleep(3600)
