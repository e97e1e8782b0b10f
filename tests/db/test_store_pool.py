"""Store's pool: the wait for a connection is JOBLINE_POOL_TIMEOUT (and running out of it says
so); a connection found broken gets the idle ones tested at once."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import pytest

from conftest import eventually
from jobline import App
from jobline.db.store import Store
from jobline.errors import DatabaseError

pytestmark = pytest.mark.timeout(60)


async def test_a_caller_waits_the_pool_timeout_for_a_connection_then_fails_naming_the_setting(settings):
    app = App(settings=dataclasses.replace(settings, pool_timeout=0.5))
    async with app:
        worker = await app.worker_async()
        assert worker.bookkeeping.timeout == 0.5  # the worker's own pool takes it too
        worker.executor.close()
        async with contextlib.AsyncExitStack() as held:
            for _ in range(4):  # every connection of the App's pool is taken
                await held.enter_async_context(app.store.connection())
            began = time.monotonic()
            with pytest.raises(DatabaseError, match=r"no database connection within 0\.5 s \(JOBLINE_POOL_TIMEOUT\): "
                                                    r"the database is unreachable, or all 4 connections"):
                await app.enqueue_async("anything")
            waited = time.monotonic() - began
        assert 0.4 <= waited < 20  # it waited, then gave up long before psycopg_pool's 30 s default
        assert (await app.enqueue_async("anything")).status == "pending"  # connections back: fine again


async def test_a_broken_connection_gets_its_idle_siblings_tested_and_replaced_at_once(db_url, sql):
    # After a restart or terminated backends, every idle connection is dead; each caller used to
    # find one, fail and pause in turn (0.1 + 0.2 + 0.4 + 0.8 s for a role with four).
    store = Store(db_url)
    await store.open()
    try:
        async with contextlib.AsyncExitStack() as held:
            for _ in range(4):
                await held.enter_async_context(store.connection())
        assert sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   "WHERE datname = current_database() AND pid <> pg_backend_pid()") == [(4,)]
        with pytest.raises(DatabaseError, match="terminating connection due to administrator command|the connection is lost"):
            await store.sql_run("SELECT 1")
        await eventually(lambda: store._pool.get_stats().get("connections_lost") == 3)  # the other three
        assert (await store.sql_run("SELECT 1"))["rows"] == [[1]]
    finally:
        await store.close()
