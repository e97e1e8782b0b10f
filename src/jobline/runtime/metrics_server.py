"""MetricsServer: answers GET /metrics with a worker's metrics (runtime/metrics.py).

It serves on a socket the caller bound beforehand, so that a taken port fails `jobline worker`
at once, in one line, before any work starts (cli/run.py). It runs on the worker's own loop
rather than in prometheus-client's server thread: the queue gauges are read at scrape time
through the worker's pool, which lives on that loop. A scrape is one small request, so the
server reads one request head, answers it and closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from .metrics import CONTENT_TYPE, WorkerMetrics
from .service import Service

log = logging.getLogger(__name__)

EXCHANGE_TIMEOUT = 10.0  # a connection not answered in this long (slow to send or to read) is dropped
MAX_CONNECTIONS = 16     # answered at once; a scraper uses one
MAX_HEAD_BYTES = 16384  # the request line and headers; a scraper's are a few hundred bytes


class MetricsServer(Service):
    name = "metrics"

    def __init__(self, metrics: WorkerMetrics, listening: socket.socket):
        super().__init__()
        self.metrics = metrics
        self.listening = listening
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    def close(self) -> None:
        """Close the listening socket (once stopped for good)."""
        self.listening.close()

    async def run(self) -> None:
        # A duplicate: closing the server closes its socket, and the role may be started again.
        server = await asyncio.start_server(self._answer, sock=self.listening.dup(), limit=MAX_HEAD_BYTES)
        host, port = self.listening.getsockname()[:2]
        log.info("metrics.listening", extra={"host": host, "port": port})
        try:
            await self.stopping.wait()
        finally:
            server.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The whole exchange is bounded, writing included (a client that stops reading would
            # otherwise hold its connection for ever), and so is the number answered at once.
            async with asyncio.timeout(EXCHANGE_TIMEOUT), self._slots:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
                if target.split("?", 1)[0] != "/metrics":
                    status, body, kind = "404 Not Found", b"not found: the metrics are at /metrics\n", "text/plain"
                elif method not in ("GET", "HEAD"):
                    status, body, kind = "405 Method Not Allowed", b"use GET\n", "text/plain"
                else:
                    status, body, kind = "200 OK", await self.metrics.render(), CONTENT_TYPE
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                             f"Connection: close\r\n\r\n".encode("latin-1"))
                if method != "HEAD":
                    writer.write(body)
                await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a malformed, oversized, slow or vanished client: nothing to answer
        finally:
            writer.close()
