"""Worker metrics in-process: each worker has a registry of its own, and counts only its jobs."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import eventually
from jobline import App
from jobline.runtime.metrics import WorkerMetrics
from jobline.runtime.metrics_server import MetricsServer

pytestmark = pytest.mark.timeout(60)


def bound() -> socket.socket:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    return listening


async def claimed(client: httpx.AsyncClient, port: int) -> float:
    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "jobline_worker_jobs_claimed_total")


async def test_two_workers_in_one_process_keep_their_own_counts(settings):
    app = App(settings=settings)

    @app.function("noop")
    async def noop(payload):
        return None

    async with app:
        sockets = [bound(), bound()]
        workers = [await app.worker_async(metrics_socket=s, concurrency=2, scheduler=False) for s in sockets]
        running = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
        try:
            for _ in range(40):
                await app.enqueue_async("noop")
            await eventually(lambda: _all_done(app), timeout=20)
            ports = [s.getsockname()[1] for s in sockets]
            async with httpx.AsyncClient() as client:
                counts = [await claimed(client, port) for port in ports]
        finally:
            for w in workers:
                w.request_stop()
            await asyncio.gather(*running)
    # A shared (or the global) registry would have refused the second worker's metrics, or
    # counted every job twice.
    assert sum(counts) == 40


async def _all_done(app: App) -> bool:
    return await app.store.job_count_live() == []


async def test_the_metrics_server_answers_after_a_restart_and_refuses_other_paths(store):
    server = MetricsServer(WorkerMetrics(store), bound())
    port = server.listening.getsockname()[1]
    try:
        for _ in range(2):
            server.start()
            async with httpx.AsyncClient() as client:
                response = await eventually(lambda: _get(client, f"http://127.0.0.1:{port}/metrics"), timeout=5)
                assert response.status_code == 200 and "jobline_queue_depth" in response.text
                assert (await client.get(f"http://127.0.0.1:{port}/")).status_code == 404
                assert (await client.post(f"http://127.0.0.1:{port}/metrics")).status_code == 405
            await server.stop()
    finally:
        server.close()


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        return await client.get(url)
    except httpx.TransportError:
        return None
