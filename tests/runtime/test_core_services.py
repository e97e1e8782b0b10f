"""Every long-running role starts and stops cleanly, many times, on a real database (River's
start/stop stress test)."""

from __future__ import annotations

import asyncio

import pytest

from jobline.runtime.completer import Completer
from jobline.runtime.executor import Executor
from jobline.runtime.heartbeat import Heartbeat
from jobline.runtime.inflight import InFlight
from jobline.runtime.maintenance import Maintenance
from jobline.runtime.notifier import Notifier
from jobline.runtime.producer import Producer
from jobline.runtime.registry import Registry

pytestmark = pytest.mark.timeout(60)


async def test_every_service_survives_rapid_start_stop(store, settings):
    wake = asyncio.Event()
    inflight = InFlight(4, wake)
    executor = Executor(store, Registry(), "w", threads=2)
    completer = Completer(store, inflight, "w")
    services = [
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
