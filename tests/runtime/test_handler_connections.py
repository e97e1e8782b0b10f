"""ctx.connect() and ctx.connect_async(): at most JOBLINE_HANDLER_CONNECTIONS open at once in a
worker; one more waits up to JOBLINE_POOL_TIMEOUT, then fails naming both settings; a
connection a handler leaves open is closed when it returns (runtime/connections.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading

import pytest

from conftest import eventually
from jobline import App

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_app(settings):
    def make(**overrides) -> App:
        return App(settings=dataclasses.replace(settings, **overrides))

    return make


async def run_worker(app: App, **options):
    worker = await app.worker_async(**options)
    return worker, asyncio.create_task(worker.run(handle_signals=False))


async def stop_worker(worker, running) -> None:
    worker.request_stop()
    await asyncio.wait_for(running, timeout=30)


async def test_async_handlers_hold_at_most_the_limit_and_the_others_wait_their_turn(make_app):
    app = make_app(handler_connections=2, concurrency=4)
    state = {"open": 0, "peak": 0}
    release = asyncio.Event()

    @app.function("hold")
    async def hold(payload, ctx):
        async with await ctx.connect_async() as conn:
            await conn.execute("SELECT 1")
            state["open"] += 1
            state["peak"] = max(state["peak"], state["open"])
            await release.wait()
            state["open"] -= 1

    async with app:
        ids = await app.enqueue_many_async([{"function": "hold"}] * 4)
        worker, running = await run_worker(app)
        try:
            limit = worker.executor.connections
            await eventually(lambda: state["open"] == 2 and limit.waiting == 2)  # two wait for a slot
            release.set()

            async def finished():
                return all([(await app.get_job_async(i)).status == "succeeded" for i in ids])
            await eventually(finished, timeout=20)
        finally:
            release.set()
            await stop_worker(worker, running)
    assert state["peak"] == 2 and limit.in_use == 0


async def test_a_handler_waiting_longer_than_the_pool_timeout_fails_naming_the_settings(make_app):
    app = make_app(handler_connections=1, pool_timeout=0.5, concurrency=2)
    holding, release = threading.Event(), threading.Event()

    @app.function("hog", max_attempts=1)
    def hog(payload, ctx):
        with ctx.connect() as conn:
            conn.execute("SELECT 1")
            holding.set()
            release.wait(30)

    @app.function("late", max_attempts=1)
    def late(payload, ctx):
        with ctx.connect() as conn:
            conn.execute("SELECT 1")

    async with app:
        hogging = await app.enqueue_async("hog")
        worker, running = await run_worker(app)
        try:
            await eventually(holding.is_set)
            waiting = await app.enqueue_async("late")

            async def failed():
                job = await app.get_job_async(waiting.id)
                return job if job.status == "failed" else None
            job = await eventually(failed, timeout=20)
            release.set()

            async def hog_done():
                return (await app.get_job_async(hogging.id)).status == "succeeded"
            await eventually(hog_done, timeout=20)
        finally:
            release.set()
            await stop_worker(worker, running)
    assert "DatabaseError" in job.last_error
    assert "all 1 handler connections of this process (JOBLINE_HANDLER_CONNECTIONS)" in job.last_error
    assert "stayed in use for 0.5 s (JOBLINE_POOL_TIMEOUT)" in job.last_error


async def test_a_connection_left_open_is_closed_when_its_handler_returns(make_app, sql, caplog):
    app = make_app(handler_connections=1, pool_timeout=5, concurrency=1)

    @app.function("leak")
    def leak(payload, ctx):
        ctx.connect().execute("SELECT 'left open'")  # never closed

    @app.function("after")
    async def after(payload, ctx):
        async with await ctx.connect_async() as conn:  # the only slot is free again
            return (await (await conn.execute("SELECT 2")).fetchone())[0]

    async with app:
        leaked = await app.enqueue_async("leak")
        with caplog.at_level(logging.WARNING, logger="jobline"):
            summary = await app.process_async()
        second = await app.enqueue_async("after")
        await app.process_async()
        assert (await app.get_job_async(second.id)).result == 2
    assert summary.succeeded == 1
    warnings = [r for r in caplog.records if r.getMessage() == "handler.connections_left_open"]
    assert [(r.job_id, r.count) for r in warnings] == [(leaked.id, 1)]
    assert sql("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT ''left open'''")[0][0] == 0


async def test_sync_connect_on_the_event_loop_fails_at_once_when_no_slot_is_free(make_app):
    app = make_app(handler_connections=1, pool_timeout=30, concurrency=2)
    holding, release = asyncio.Event(), asyncio.Event()

    @app.function("hold")
    async def hold(payload, ctx):
        async with await ctx.connect_async():
            holding.set()
            await release.wait()

    @app.function("blocking", max_attempts=1)
    async def blocking(payload, ctx):
        ctx.connect()  # would block the loop that frees the slot: refused at once

    async with app:
        await app.enqueue_async("hold")
        worker, running = await run_worker(app)
        try:
            await eventually(holding.is_set)
            refused = await app.enqueue_async("blocking")

            async def failed():
                job = await app.get_job_async(refused.id)
                return job if job.status == "failed" else None
            job = await eventually(failed, timeout=10)  # well before the 30 s pool timeout
        finally:
            release.set()
            await stop_worker(worker, running)
    assert "use `await ctx.connect_async()` in an async handler" in job.last_error
