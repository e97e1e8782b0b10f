"""Notifier: one LISTEN connection per process that wakes the roles waiting on a channel: the
producer when jobs are added, the scheduler when a schedule is new or changed.

It checks its connection every few seconds (a half-open socket would otherwise stay silent
for ever), reconnects after any failure (about every second while the database is away), and
wakes every role after each reconnect so that what happened while it was deaf is seen at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

import psycopg

from ..db.store import Store
from ..errors import JoblineError
from .service import RETRY_PAUSE_MAX, STOP_TIMEOUT, Service

log = logging.getLogger(__name__)


class Notifier(Service):
    name = "notifier"

    def __init__(self, store: Store, wakes: Mapping[str, asyncio.Event], *, check_every: float = 5.0):
        super().__init__()
        self.store = store
        self.wakes = dict(wakes)  # channel -> the event it sets
        self.check_every = check_every
        self.connected = asyncio.Event()  # test signal
        self._conn: psycopg.AsyncConnection | None = None  # for stop() to close; _listen uses its own
        self._down_since: float | None = None  # while reconnecting: when the connection was lost

    async def run(self) -> None:
        pause = 0.05
        while not self.stopping.is_set():
            try:
                await self._listen()
            except (psycopg.Error, JoblineError, OSError, TimeoutError) as exc:
                self.connected.clear()
                if self.stopping.is_set():
                    break
                if self._down_since is None:  # once per outage: every attempt would flood the log
                    self._down_since = time.monotonic()
                    log.warning("listener.disconnected", extra={"error": str(exc).strip(), "retry_in_s": pause})
                else:
                    log.debug("listener.retrying", extra={"error": str(exc).strip(), "retry_in_s": pause})
                if await self.sleep(pause):
                    break
                # Capped like the roles' retries, so the listener is back within about a second
                # of the database (and wakes every role then).
                pause = min(pause * 2, RETRY_PAUSE_MAX)
            else:
                pause = 0.05

    async def _listen(self) -> None:
        conn = self._conn = await self.store.connect_listener(list(self.wakes))
        try:
            self.connected.set()
            if self._down_since is not None:
                log.info("listener.reconnected", extra={"down_s": round(time.monotonic() - self._down_since, 3)})
                self._down_since = None
            for wake in self.wakes.values():  # catch up on anything that happened while we were not listening
                wake.set()
            log.debug("listener.connected")
            while not self.stopping.is_set():
                async for notification in conn.notifies(timeout=self.check_every):
                    self.wakes[notification.channel].set()
                    if self.stopping.is_set():
                        return
                if self.stopping.is_set():  # stop() closed the connection to end the wait
                    return
                # Proves the connection is alive; a half-open socket would otherwise stay silent.
                await asyncio.wait_for(conn.execute("SELECT 1"), timeout=self.check_every)
        finally:
            self._conn = None
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.stopping.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()  # ends a pending notifies() wait at once
        await super().stop(timeout)
