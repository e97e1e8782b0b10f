"""Remote tasks: a job claimed by a worker outside this process (over HTTP, or a Client falling
back to the database), and the reports it makes on it. One implementation for both paths.

A claim leases one job, or up to MAX_CLAIM_LIMIT in one statement, under a token unique to
that claim (the tasks of one claim share it); complete, fail and heartbeat must present it.
Everything is scoped to the caller (policy.scope) in SQL: another user's task answers as a task
that does not exist. A report whose lease was lost (it expired and the task
was rescued, or a person cancelled it) is refused with LeaseLost and changes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

from ..auth import Principal
from ..db.store import Store
from ..errors import InvalidInput, LeaseLost
from ..job import MAX_ERROR_CHARS, check_ids, check_name, encode_result
from ..retry import DEFAULT_BACKOFF, retries
from .policy import scope

MAX_TASK_TYPES = 100
# Tasks per claim request: enough to fill a worker's slots in one round trip, while the answer
# (each task with its params) and the rows locked by one statement stay small.
MAX_CLAIM_LIMIT = 100
MAX_RETRY_IN = 366 * 86400
LEASE_TOKEN = re.compile(r"remote:[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True, slots=True)
class Task:
    """A claimed task, with seed 004's field names plus what its reports need."""

    task_id: int
    task_type: str
    params: dict
    project_id: str | None      # the owner
    attempt: int
    max_attempts: int
    lease_token: str
    lease_until: dt.datetime
    # A pipeline step's upstream results by step name (ctx.upstream); None for other tasks.
    upstream: dict | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lease_until"] = self.lease_until.isoformat()
        return d


class Tasks:
    def __init__(self, store: Store, lease_seconds: float):
        self.store = store
        self.lease_seconds = lease_seconds

    async def claim(self, caller: Principal, task_types: Sequence[str] | None = None) -> Task | None:
        """The next claimable task of the caller's (any owner's for the service), or None.
        Without ``task_types``, only remote task types (functions no in-process worker serves)."""
        tasks = await self.claim_many(caller, task_types, 1)
        return tasks[0] if tasks else None

    async def claim_many(self, caller: Principal, task_types: Sequence[str] | None = None,
                         limit: int = 1) -> list[Task]:
        """Up to ``limit`` (1 to MAX_CLAIM_LIMIT) claimable tasks in claim order, in one statement,
        as :meth:`claim` picks them. They share one lease token: one claim, one claimer.

        >>> await tasks.claim_many(SERVICE, ["render"], 10)  # doctest: +SKIP
        [Task(task_id=7, ...), Task(task_id=8, ...)]
        """
        types = None if task_types is None else check_task_types(task_types)
        limit = check_claim_limit(limit)
        lease = f"remote:{secrets.token_hex(16)}"
        rows = await self.store.task_claim_many(worker_id=lease, owner=scope(caller), task_types=types, limit=limit,
                                                lease_seconds=self.lease_seconds)
        return [Task(task_id=row["id"], task_type=row["function"], params=row["payload"], project_id=row["owner"],
                     attempt=row["attempts"], max_attempts=row["max_attempts"], lease_token=lease,
                     lease_until=row["lease_until"], upstream=row["upstream"]) for row in rows]

    async def complete(self, caller: Principal, task_id: int, lease_token: str, result: Any = None) -> str:
        """Record success with ``result`` (JSON, at most 1 MiB); returns the job's status."""
        return await self._report(scope(caller), task_id, lease_token, "succeeded", result=encode_result(result))

    async def complete_many(self, caller: Principal, reports: Sequence[tuple[int, str, Any]]) -> list[tuple[int, str]]:
        """Record the success of up to MAX_CLAIM_LIMIT tasks, given as (task_id, lease_token,
        result): one lease check and one fenced write per lease token, so a batch from one claim
        costs two statements. Each report stands alone: returns (task_id, outcome) in the given
        order, outcome ``succeeded``, ``lease_lost`` (as complete's LeaseLost) or ``not_found``
        (no such task, or not the caller's).

        >>> await tasks.complete_many(SERVICE, [(7, task.lease_token, {"ok": True})])  # doctest: +SKIP
        [(7, 'succeeded')]
        """
        if not isinstance(reports, (list, tuple)) or not 1 <= len(reports) <= MAX_CLAIM_LIMIT:
            raise InvalidInput(f"reports must be a list of 1 to {MAX_CLAIM_LIMIT} reports")
        ids = [task_id for task_id, _, _ in reports]
        if len(set(ids)) != len(ids):
            raise InvalidInput("reports name a task more than once: report on each task once")
        by_lease: dict[str, list[int]] = {}
        results: dict[int, str | None] = {}
        for task_id, lease_token, result in reports:
            self._check(task_id, lease_token)
            results[task_id] = encode_result(result)
            by_lease.setdefault(lease_token, []).append(task_id)
        owner = scope(caller)
        outcome: dict[int, str] = {}
        finished = time.time()
        for lease_token, task_ids in by_lease.items():
            held = await self.store.task_hold_many(task_ids, worker_id=lease_token, owner=owner)
            if not held:
                continue
            # Fenced on (status, worker_id, attempts) as in _report: a lease lost since the
            # hold writes nothing for that task.
            done = await self.store.job_complete_many(lease_token, {
                "ids": [h["id"] for h in held], "attempts": [h["attempts"] for h in held],
                "statuses": ["succeeded"] * len(held), "retry_in": [None] * len(held),
                "results": [results[h["id"]] for h in held], "errors": [None] * len(held),
                "tracebacks": [None] * len(held), "outcomes": ["succeeded"] * len(held),
                "started_at": [h["started_at"].timestamp() for h in held], "finished_at": [finished] * len(held)})
            outcome.update((task_id, "succeeded") for task_id, _ in done)
        missing = [task_id for task_id in ids if task_id not in outcome]
        if missing:  # the rare path: tell a lost lease from a task not theirs, in one query
            theirs = {row["id"] for row in await self.store.job_list_brief(missing, owner=owner)}
            outcome.update((task_id, "lease_lost" if task_id in theirs else "not_found") for task_id in missing)
        return [(task_id, outcome[task_id]) for task_id in ids]

    async def fail(self, caller: Principal, task_id: int, lease_token: str, error: str, *, retryable: bool = True,
                   retry_in: float | None = None) -> str:
        """Record a failed attempt: retried with backoff (or after ``retry_in`` seconds) while
        attempts remain and it is ``retryable``, else final. Returns the job's new status."""
        if not isinstance(error, str) or not error.strip():
            raise InvalidInput("error must be a non-empty string saying what went wrong")
        if retry_in is not None and (isinstance(retry_in, bool) or not isinstance(retry_in, (int, float))
                                     or not 0 <= retry_in <= MAX_RETRY_IN):
            raise InvalidInput(f"retry_in must be a number of seconds from 0 to {MAX_RETRY_IN}, got {retry_in!r}")
        return await self._report(scope(caller), task_id, lease_token, "failed", error=error[:MAX_ERROR_CHARS],
                                  retryable=bool(retryable), retry_in=retry_in)

    async def snooze(self, caller: Principal, task_id: int, lease_token: str, seconds: float) -> str:
        """Put the task back to pending for ``seconds`` without spending an attempt (a handler's
        Snooze); recorded as a ``snoozed`` attempt. Returns the job's new status, ``pending``."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_RETRY_IN:
            raise InvalidInput(f"seconds must be a number of seconds from 0 to {MAX_RETRY_IN}, got {seconds!r}")
        return await self._report(scope(caller), task_id, lease_token, "snoozed", retry_in=float(seconds))

    async def heartbeat(self, caller: Principal, task_id: int, lease_token: str) -> dt.datetime:
        """Extend the lease by the lease time from now; returns its new end."""
        self._check(task_id, lease_token)
        owner = scope(caller)
        until = await self.store.task_heartbeat(task_id, worker_id=lease_token, owner=owner,
                                                lease_seconds=self.lease_seconds)
        if until is None:
            await self._lost(owner, task_id)
        return until

    async def _report(self, owner: str | None, task_id: int, lease_token: str, outcome: str, *,
                      result: str | None = None, error: str | None = None, retryable: bool = False,
                      retry_in: float | None = None) -> str:
        self._check(task_id, lease_token)
        held = await self.store.task_hold(task_id, worker_id=lease_token, owner=owner)
        if held is None:
            await self._lost(owner, task_id)
        attempt = held["attempts"]
        if outcome == "succeeded":
            status = "succeeded"
        elif outcome == "snoozed":
            status = "pending"  # job_complete_many gives the snoozed attempt back to the budget
        elif retries(attempt, held["max_attempts"], retryable):
            status = "pending"
            retry_in = DEFAULT_BACKOFF.delay(attempt) if retry_in is None else float(retry_in)
        else:
            status, retry_in = "failed", None
        # job_complete_many is fenced on (status, worker_id, attempts): a lease lost since
        # task_hold makes it write nothing.
        done = await self.store.job_complete_many(lease_token, {
            "ids": [task_id], "attempts": [attempt], "statuses": [status], "retry_in": [retry_in],
            "results": [result], "errors": [error], "tracebacks": [None], "outcomes": [outcome],
            "started_at": [held["started_at"].timestamp()], "finished_at": [time.time()]})
        if not done:
            await self._lost(owner, task_id)
        return status

    @staticmethod
    def _check(task_id: int, lease_token: str) -> None:
        check_ids([task_id], "task id")
        if not isinstance(lease_token, str) or not LEASE_TOKEN.fullmatch(lease_token):
            raise InvalidInput("lease_token must be the lease_token that claim-next-task returned with the task")

    async def _lost(self, owner: str | None, task_id: int) -> None:
        """Raise the right refusal for a report that matched no held lease."""
        job = await self.store.job_get(task_id, owner=owner)  # JobNotFound: not theirs, or no such task
        raise LeaseLost(f"task {task_id} is no longer held under this lease (it is {job.status}: the lease "
                        "expired and the task was rescued, or it was cancelled); this report changes nothing")


def check_claim_limit(limit: Any) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CLAIM_LIMIT:
        raise InvalidInput(f"limit must be a whole number of tasks from 1 to {MAX_CLAIM_LIMIT}, got {limit!r}")
    return limit


def check_task_types(task_types: Any) -> list[str]:
    if not isinstance(task_types, (list, tuple)) or not task_types or len(task_types) > MAX_TASK_TYPES:
        raise InvalidInput(f"task_types must be a list of 1 to {MAX_TASK_TYPES} function names")
    return [check_name(name, "task type") for name in task_types]
