"""Handler connections: the database connections handlers open with ``ctx.connect()`` (sync,
from a handler's thread) and ``ctx.connect_async()`` (on the worker's loop), bounded per process.

Each is a new connection of its own (not one of jobline's pools: a handler may change session
settings or hold a transaction as it likes). At most ``limit`` are open at once
(JOBLINE_HANDLER_CONNECTIONS); a handler asking for one more waits up to ``timeout`` seconds
(JOBLINE_POOL_TIMEOUT) for another to close, then gets a DatabaseError saying so. Without a
bound, a worker with --concurrency 1000 could open 1000 connections and exhaust the server's
max_connections, refusing every other client.

A slot is freed when its connection is closed (``with ctx.connect() as conn:`` closes it), and
at the latest when the handler that opened it returns: the executor closes what it left open.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg

from ..errors import DatabaseError


class ConnectionLimit:
    """At most ``limit`` handler connections open at once, shared by threads and the loop."""

    def __init__(self, limit: int, timeout: float):
        self.limit = limit
        self.timeout = timeout
        self._free = limit
        self._changed = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    @property
    def waiting(self) -> int:
        """Async waiters (a test signal; threads waiting are not counted)."""
        return len(self._async_waiters)

    def connect(self, url: str, **kwargs: Any) -> psycopg.Connection:
        """A new sync connection holding a slot (waits for one in this thread). On the event loop's
        thread (an async handler calling ctx.connect()) it cannot wait: the slots it would wait for
        are freed by code on that same loop."""
        on_loop = _on_event_loop()
        with self._changed:
            if not self._changed.wait_for(self._take, 0 if on_loop else self.timeout):
                raise self._exhausted(on_loop)
        try:
            conn = HandlerConnection.connect(url, **kwargs)
        except BaseException:
            self._release()
            raise
        conn._jobline_release = _Once(self._release)
        return conn

    async def connect_async(self, url: str, **kwargs: Any) -> psycopg.AsyncConnection:
        """A new async connection holding a slot (waits for one without blocking the loop)."""
        await self._acquire_async()
        try:
            conn = await AsyncHandlerConnection.connect(url, **kwargs)
        except BaseException:
            self._release()
            raise
        conn._jobline_release = _Once(self._release)
        return conn

    def _take(self) -> bool:  # with self._changed held
        if self._free > 0:
            self._free -= 1
            return True
        return False

    async def _acquire_async(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            with self._changed:
                if self._take():
                    return
                waiter = loop.create_future()
                self._async_waiters.append((loop, waiter))
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise self._exhausted() from None
            finally:
                with self._changed:
                    if (loop, waiter) in self._async_waiters:
                        self._async_waiters.remove((loop, waiter))

    def _release(self) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify()
            # Every async waiter tries again (one takes the slot, the others wait on): simpler
            # than handing the slot to one that may have been cancelled meanwhile.
            waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_wake, waiter)

    def _exhausted(self, on_loop: bool = False) -> DatabaseError:
        if on_loop:
            return DatabaseError(f"all {self.limit} handler connections of this process (JOBLINE_HANDLER_CONNECTIONS) "
                                 "are in use, and ctx.connect() cannot wait for one on the event loop: use "
                                 "`await ctx.connect_async()` in an async handler")
        return DatabaseError(f"all {self.limit} handler connections of this process (JOBLINE_HANDLER_CONNECTIONS) "
                             f"stayed in use for {self.timeout:g} s (JOBLINE_POOL_TIMEOUT): close each connection "
                             "when done (`with ctx.connect() as conn:`), or raise the limit")


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Once:
    """Frees a slot once, however many times its connection is closed."""

    def __init__(self, release) -> None:
        self._release = release
        self._lock = threading.Lock()

    @property
    def pending(self) -> bool:
        """Not freed yet: its connection was never closed."""
        return self._release is not None

    def __call__(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()


class HandlerConnection(psycopg.Connection):
    """A handler's sync connection: closing it frees its slot."""

    _jobline_release: _Once | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._jobline_release is not None:
                self._jobline_release()


class AsyncHandlerConnection(psycopg.AsyncConnection):
    """A handler's async connection: closing it frees its slot."""

    _jobline_release: _Once | None = None

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            if self._jobline_release is not None:
                self._jobline_release()
