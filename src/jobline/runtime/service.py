"""Service: the shape of every long-running role (start, stop, wait), with crash-restart.

A role's ``run()`` loops until ``self.stopping`` is set. If it raises, the error is logged
once and the loop restarts after a growing pause, so one bad moment (the database restarting,
say) never kills a worker. The pause after a database error stays short (RETRY_PAUSE_MAX), so
a role is back at work within about a second of the database; ``stop()`` cancels a role that
does not finish its current step in time (it is waiting on a database that does not answer).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from ..errors import DatabaseError

log = logging.getLogger(__name__)

# The longest pause before a role retries after a database error. The pool's own reconnection
# is tried about every second (db/store.py), so a longer pause would be what delays recovery.
RETRY_PAUSE_MAX = 1.0
# ... and after any other error (a bug): long enough not to flood the log.
CRASH_PAUSE_MAX = 10.0
# How long stop() lets a role finish its current step before cancelling it. With the database
# up a step takes milliseconds; a step still running after this is waiting on a database that
# does not answer, and a process must stop in time regardless (the jobs it leased are rescued).
STOP_TIMEOUT = 2.0


class Service:
    name = "service"

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.stopping.clear()
        self._task = asyncio.create_task(self._supervise(), name=f"jobline-{self.name}")

    async def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the loop to finish; cancel it if it has not within ``timeout`` seconds."""
        self.stopping.set()
        task = self._task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("service.cancelled", extra={"service": self.name, "after_s": timeout,
                                                    "reason": "its current step did not finish in time"})
            task.cancel()
            await asyncio.wait({task})

    async def wait(self) -> None:
        """Until the loop has finished (returned, or was cancelled by stop())."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass
        return self.stopping.is_set()

    async def _supervise(self) -> None:
        pause = 0.1
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                await self.run()
                return
            except asyncio.CancelledError:
                raise
            except DatabaseError as exc:  # the database restarting or unreachable: expected, brief
                error, longest = exc, RETRY_PAUSE_MAX
            except Exception as exc:  # the top of a service loop: log, pause, go on
                error, longest = exc, CRASH_PAUSE_MAX
            if time.monotonic() - began > 60:
                pause = 0.1  # it had been running well: this is a new incident
            pause = min(pause, longest)
            if isinstance(error, DatabaseError):
                log.warning("service.interrupted", extra={"service": self.name, "error": str(error).strip(),
                                                          "retry_in_s": pause})
            else:
                log.error("service.crashed", extra={"service": self.name, "retry_in_s": pause}, exc_info=error)
            if await self.sleep(pause):
                return
            pause *= 2


def install_stop_signals(stop: asyncio.Event, hurry: asyncio.Event, grace_seconds: float) -> None:
    """SIGTERM / SIGINT: the first sets ``stop`` (stop taking work, let running work finish
    within ``grace_seconds``), a second sets ``hurry`` (stop waiting)."""
    loop = asyncio.get_running_loop()
    count = 0

    def on_signal(signum: int) -> None:
        nonlocal count
        count += 1
        if count == 1:
            log.info("worker.stopping", extra={"signal": signal.Signals(signum).name, "grace_s": grace_seconds})
            stop.set()
        else:
            hurry.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
