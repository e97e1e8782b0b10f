"""InFlight: the jobs a worker holds, from claim until their outcome is recorded.

Shared by the roles of one worker: the producer claims only for free slots, the heartbeat
renews the leases of what is here, the completer frees slots once outcomes are written.
"""

from __future__ import annotations

import asyncio
import dataclasses


@dataclasses.dataclass(slots=True)
class Held:
    job_id: int
    attempt: int
    task: asyncio.Task | None = None


class InFlight:
    def __init__(self, capacity: int, wake: asyncio.Event):
        self.capacity = capacity
        self.wake = wake             # the producer's wake-up event
        self.more_due = False        # the last claim filled every free slot: more may be due
        self._held: dict[int, Held] = {}
        self._empty = asyncio.Event()
        self._empty.set()

    def free(self) -> int:
        return self.capacity - len(self._held)

    def add(self, held: Held) -> None:
        self._held[held.job_id] = held
        self._empty.clear()

    def release(self, job_id: int) -> None:
        if self._held.pop(job_id, None) is None:
            return
        if not self._held:
            self._empty.set()
            self.wake.set()  # an idle worker looks once more: its own jobs may have released others
            return
        # Wake the producer only when a claim is worth it: more jobs are known to be due, and
        # enough slots are free for a batch (so a busy worker claims in batches, not one by one).
        if self.more_due and self.free() >= max(1, self.capacity // 4):
            self.wake.set()

    def get(self, job_id: int) -> Held | None:
        return self._held.get(job_id)

    def ids(self) -> list[int]:
        return list(self._held)

    def held(self) -> list[Held]:
        return list(self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    async def wait_empty(self) -> None:
        await self._empty.wait()
