"""Notifier: one LISTEN connection per process that wakes the roles waiting on a channel: the
producer when jobs are added, the scheduler when a schedule is new or changed.

It checks its connection every few seconds (a half-open socket would otherwise stay silent
for ever), reconnects after any failure (about every second while the database is away), and
wakes every role after each reconnect so that what happened while it was deaf is seen at once.

Its connection goes to JOBLINE_LISTEN_DATABASE_URL (default JOBLINE_DATABASE_URL). Through a
transaction-mode pooler LISTEN succeeds but nothing is ever heard: the LISTEN stays on a server
connection the pooler hands to other clients. So after each connect it NOTIFYs a private probe
channel through the pool, and if the probe is not heard within ``check_every`` seconds it logs
`listener.deaf` once: the roles still work, on polling alone (JOBLINE_POLL_INTERVAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Mapping

import psycopg

from ..db.store import Store
from ..errors import JoblineError
from .service import RETRY_PAUSE_MAX, STOP_TIMEOUT, Service

log = logging.getLogger(__name__)


class Notifier(Service):
    name = "notifier"

    def __init__(self, store: Store, wakes: Mapping[str, asyncio.Event], *, check_every: float = 5.0,
                 probe_seconds: float = 15.0):
        super().__init__()
        self.store = store
        self.wakes = dict(wakes)  # channel -> the event it sets
        self.check_every = check_every
        self.connected = asyncio.Event()  # test signal
        # Set once the connection passed a health check: only then does an outage start the
        # backoff afresh (one that drops every connection at once would otherwise be retried
        # every 50 ms for ever).
        self.proven = asyncio.Event()
        # How long the probe may take before the listener is called deaf: generous, so that a
        # busy machine never gets the warning wrongly.
        self.probe_seconds = probe_seconds
        self._conn: psycopg.AsyncConnection | None = None  # for stop() to close; _listen uses its own
        self._down_since: float | None = None  # while reconnecting: when the connection was lost
        self._probe = f"jobline_probe_{secrets.token_hex(8)}"  # private: no other process notifies it
        self._probe_due: float | None = None  # when the probe sent on this connection should have arrived
        self.deaf = False  # the probe went unheard (test signal; warned once)

    async def run(self) -> None:
        pause = 0.05
        while not self.stopping.is_set():
            try:
                await self._listen()
            except (psycopg.Error, JoblineError, OSError, TimeoutError) as exc:
                if self.proven.is_set():  # this connection worked: the next outage starts the backoff afresh
                    pause = 0.05
                self.connected.clear()
                self.proven.clear()
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
        conn = self._conn = await self.store.connect_listener([*self.wakes, self._probe])
        try:
            self.connected.set()
            if self._down_since is not None:
                log.info("listener.reconnected", extra={"down_s": round(time.monotonic() - self._down_since, 3)})
                self._down_since = None
            for wake in self.wakes.values():  # catch up on anything that happened while we were not listening
                wake.set()
            log.debug("listener.connected")
            await self._send_probe()
            while not self.stopping.is_set():
                async for notification in conn.notifies(timeout=self.check_every):
                    if notification.channel == self._probe:
                        self._probe_due = None
                    else:
                        self.wakes[notification.channel].set()
                    if self.stopping.is_set():
                        return
                if self.stopping.is_set():  # stop() closed the connection to end the wait
                    return
                self._check_probe()
                # Proves the connection is alive; a half-open socket would otherwise stay silent.
                # Never prepared (see connect_listener).
                await asyncio.wait_for(conn.execute("SELECT 1", prepare=False), timeout=self.check_every)
                self.proven.set()
        finally:
            self._conn = None
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _send_probe(self) -> None:
        if self.deaf:  # warned already; one probe per process is enough
            return
        try:
            await self.store.listener_probe_send(self._probe)
        except JoblineError as exc:  # the pool is away: no verdict on this connection
            log.debug("listener.probe_failed", extra={"error": str(exc).strip()})
            self._probe_due = None
        else:
            self._probe_due = time.monotonic() + self.probe_seconds

    def _check_probe(self) -> None:
        if self._probe_due is None or time.monotonic() < self._probe_due:
            return
        self._probe_due = None
        self.deaf = True
        log.warning("listener.deaf", extra={
            "reason": "a notification sent through JOBLINE_DATABASE_URL did not reach the LISTEN connection within "
                      f"{self.probe_seconds:g} s; it most likely goes through a transaction-mode pooler, where LISTEN "
                      "does not work (or JOBLINE_LISTEN_DATABASE_URL names another database)",
            "fix": "set JOBLINE_LISTEN_DATABASE_URL to a direct connection to PostgreSQL; until then new jobs are "
                   "picked up by polling, every JOBLINE_POLL_INTERVAL seconds"})

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        self.stopping.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()  # ends a pending notifies() wait at once
        await super().stop(timeout)
