"""Heartbeat: renews the leases of the jobs this worker holds, and notices lost ones.

A job missing from the renewal's answer was rescued (our lease had expired: the process was
frozen, say) or cancelled by a person; its handler is stopped and its slot freed, since any
report it made would be refused anyway.
"""

from __future__ import annotations

import logging

from ..db.store import Store
from .inflight import InFlight
from .service import Service

log = logging.getLogger(__name__)


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(self, store: Store, inflight: InFlight, worker_id: str, lease_seconds: float):
        super().__init__()
        self.store = store
        self.inflight = inflight
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.interval = lease_seconds / 3

    async def run(self) -> None:
        while not await self.sleep(self.interval):
            await self.beat()

    async def beat(self) -> None:
        held = self.inflight.held()
        kept = await self.store.job_extend_leases(worker_id=self.worker_id, ids=[h.job_id for h in held],
                                                  lease_seconds=self.lease_seconds)
        for h in held:
            # A task that is done has an outcome on its way to the completer; leave it be.
            if h.job_id not in kept and h.task is not None and not h.task.done():
                log.warning("job.lease_lost", extra={"job_id": h.job_id, "attempt": h.attempt})
                h.task.cancel()
                self.inflight.release(h.job_id)
