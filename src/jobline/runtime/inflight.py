"""InFlight: the jobs a worker holds, from claim until their outcome is recorded.

Shared by the roles of one worker: the producer claims only for free slots, the heartbeat
renews the leases of every job held, the completer lets go of jobs once their outcomes are
written. A slot is taken while a handler runs; a job whose handler has finished is still held
(its lease renewed) until its outcome is written, but no longer takes a slot, so claiming goes
on while outcomes are written in batches. The outcomes waiting to be written are bounded, so
a slow database slows claiming down instead of letting them pile up.
"""

from __future__ import annotations

import asyncio
import dataclasses


@dataclasses.dataclass(slots=True)
class Held:
    job_id: int
    attempt: int
    task: asyncio.Task | None = None
    running: bool = True


class InFlight:
    def __init__(self, capacity: int, wake: asyncio.Event, max_unwritten: int | None = None):
        self.capacity = capacity
        self.max_unwritten = max_unwritten or max(100, 2 * capacity)
        self.wake = wake             # the producer's wake-up event
        self.more_due = False        # the last claim filled every free slot: more may be due
        self._held: dict[int, Held] = {}
        self._running = 0
        self._empty = asyncio.Event()
        self._empty.set()

    def free(self) -> int:
        if len(self._held) - self._running >= self.max_unwritten:
            return 0
        return self.capacity - self._running

    def add(self, held: Held) -> None:
        self._held[held.job_id] = held
        self._running += 1
        self._empty.clear()

    def finished(self, job_id: int) -> None:
        """The job's handler is done (its outcome is on its way to the completer)."""
        held = self._held.get(job_id)
        if held is not None and held.running:
            held.running = False
            self._running -= 1
            self._maybe_wake()

    def release(self, job_id: int) -> None:
        """The job is no longer ours: its outcome is written, or its lease was lost."""
        held = self._held.pop(job_id, None)
        if held is None:
            return
        if held.running:
            self._running -= 1
        if not self._held:
            self._empty.set()
            self.wake.set()  # an idle worker looks once more: its own jobs may have released others
            return
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        # Wake the producer only when a claim is worth it: more jobs are known to be due, and
        # enough slots are free for a batch (so a busy worker claims in batches, not one by one).
        if self.more_due and self.free() >= max(1, self.capacity // 4):
            self.wake.set()

    def ids(self) -> list[int]:
        return list(self._held)

    def held(self) -> list[Held]:
        return list(self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    async def wait_empty(self) -> None:
        await self._empty.wait()
