"""Service: the shape of every long-running role (start, stop, wait), with crash-restart.

A role's ``run()`` loops until ``self.stopping`` is set. If it raises, the error is logged
once and the loop restarts after a growing pause, so one bad moment (the database restarting,
say) never kills a worker.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from ..errors import DatabaseError

log = logging.getLogger(__name__)


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

    async def stop(self) -> None:
        self.stopping.set()
        await self.wait()

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

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
            except asyncio.CancelledError:
                raise
            except DatabaseError as exc:  # the database restarting or unreachable: expected, brief
                log.warning("service.interrupted", extra={"service": self.name, "error": str(exc).strip(),
                                                          "retry_in_s": pause})
            except Exception:  # the top of a service loop: log, pause, go on
                log.error("service.crashed", extra={"service": self.name, "retry_in_s": pause}, exc_info=True)
            else:
                return
            if time.monotonic() - began > 60:
                pause = 0.1  # it had been running well: this is a new incident
            if await self.sleep(pause):
                return
            pause = min(pause * 2, 10.0)


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
