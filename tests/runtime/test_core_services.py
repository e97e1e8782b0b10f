"""Every long-running role starts and stops cleanly, many times, on a real database (River's
start/stop stress test)."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from conftest import eventually
from jobline.db.store import Store
from jobline.runtime.completer import Completer
from jobline.runtime.executor import Executor
from jobline.runtime.heartbeat import Heartbeat
from jobline.runtime.inflight import InFlight
from jobline.runtime.maintenance import Maintenance
from jobline.runtime.metrics import WorkerMetrics
from jobline.runtime.metrics_server import MetricsServer
from jobline.runtime.notifier import Notifier
from jobline.runtime.producer import Producer
from jobline.runtime.registry import Registry

pytestmark = pytest.mark.timeout(60)


async def test_every_service_survives_rapid_start_stop(store, settings):
    wake = asyncio.Event()
    inflight = InFlight(4, wake)
    executor = Executor(store, Registry(), "w", threads=2)
    completer = Completer(store, inflight, "w")
    listening = socket.create_server(("127.0.0.1", 0))
    metrics_server = MetricsServer(WorkerMetrics(store), listening)
    services = [
        metrics_server,
        Notifier(store, {"jobline_jobs": wake}, check_every=0.05),
        completer,
        Heartbeat(store, inflight, "w", lease_seconds=3),
        Maintenance(store, settings),
        Producer(store, inflight, executor, completer, worker_id="w", functions=["f"], queues=None,
                 batch_size=2, lease_seconds=30, poll_interval=0.01),
    ]
    try:
        for round_ in range(20):
            for service in services:
                service.start()
            await asyncio.sleep(0.001 * (round_ % 5))  # stop at different points of their loops
            await asyncio.wait_for(asyncio.gather(*(s.stop() for s in services)), timeout=10)
            assert all(s._task.done() and s._task.exception() is None for s in services)
    finally:
        executor.close()
        metrics_server.close()


async def test_notifier_stopped_while_listening_stops_without_a_crash(store, caplog):
    # stop() closes the connection to end the wait; the listener used to touch it afterwards
    # (AttributeError: 'NoneType' object has no attribute 'execute', logged as service.crashed)
    # when its wait had just ended. Checking every 10 ms makes that moment frequent.
    notifier = Notifier(store, {"jobline_jobs": asyncio.Event()}, check_every=0.01)
    with caplog.at_level(logging.WARNING, logger="jobline"):
        for round_ in range(30):
            notifier.start()
            await asyncio.wait_for(notifier.connected.wait(), timeout=10)
            await asyncio.sleep(0.003 * (round_ % 7))  # stop at different points of its loop
            await asyncio.wait_for(notifier.stop(), timeout=10)
            assert notifier._task.done() and not notifier._task.cancelled()
    assert [r.getMessage() for r in caplog.records] == []


async def test_stop_cancels_a_service_waiting_on_a_database_that_does_not_answer(db_url, settings, caplog):
    # The only connection of the pool is taken: the rescuer waits for one (up to 30 s).
    store = Store(db_url, max_size=1, timeout=30)
    await store.open()
    try:
        maintenance = Maintenance(store, settings)
        async with store.connection():
            maintenance.start()
            await eventually(lambda: store._pool.get_stats().get("requests_waiting", 0) == 1)
            with caplog.at_level(logging.WARNING, logger="jobline"):
                await asyncio.wait_for(maintenance.stop(timeout=0.5), timeout=10)
        assert maintenance._task.done()
        assert "service.cancelled" in [r.getMessage() for r in caplog.records]
        assert await store.schema_migration_list()  # the cancelled wait took no connection with it
    finally:
        await store.close()
