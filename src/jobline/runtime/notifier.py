"""Notifier: one LISTEN connection per process that wakes the roles waiting on a channel: the
producer when jobs are added, the scheduler when a schedule is new or changed.

It checks its connection every few seconds (a half-open socket would otherwise stay silent
for ever), reconnects with backoff after any failure, and wakes every role after each
reconnect so that what happened while it was deaf is seen at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import psycopg

from ..db.store import Store
from ..errors import JoblineError
from .service import Service

log = logging.getLogger(__name__)


class Notifier(Service):
    name = "notifier"

    def __init__(self, store: Store, wakes: Mapping[str, asyncio.Event], *, check_every: float = 5.0):
        super().__init__()
        self.store = store
        self.wakes = dict(wakes)  # channel -> the event it sets
        self.check_every = check_every
        self.connected = asyncio.Event()  # test signal
        self._conn: psycopg.AsyncConnection | None = None

    async def run(self) -> None:
        pause = 0.05
        while not self.stopping.is_set():
            try:
                await self._listen()
            except (psycopg.Error, JoblineError, OSError, TimeoutError) as exc:
                self.connected.clear()
                if self.stopping.is_set():
                    break
                log.warning("listener.disconnected", extra={"error": str(exc), "retry_in_s": pause})
                if await self.sleep(pause):
                    break
                pause = min(pause * 2, 5.0)
            else:
                pause = 0.05
            finally:
                await self._close()

    async def _listen(self) -> None:
        self._conn = await self.store.connect_listener(list(self.wakes))
        self.connected.set()
        for wake in self.wakes.values():  # catch up on anything that happened while we were not listening
            wake.set()
        log.debug("listener.connected")
        while not self.stopping.is_set():
            async for notification in self._conn.notifies(timeout=self.check_every):
                self.wakes[notification.channel].set()
                if self.stopping.is_set():
                    return
            # Proves the connection is alive; a half-open socket would otherwise stay silent.
            await asyncio.wait_for(self._conn.execute("SELECT 1"), timeout=self.check_every)

    async def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await conn.close()
            except psycopg.Error:
                pass

    async def stop(self) -> None:
        self.stopping.set()
        await self._close()  # ends a pending notifies() wait at once
        await self.wait()
