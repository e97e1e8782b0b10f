"""Jobs as a caller acts on them: enqueue, read, list, steer, count. Every method takes the
caller (a Principal) first, and policy.py decides what that caller may do.

The registry fills in what a caller leaves out: a job of a registered function takes that
function's queue, priority and max_attempts unless the caller says otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg

from ..auth import Principal
from ..db import store as store_module
from ..db.store import Store
from ..errors import InvalidInput
from ..job import LIVE_STATUSES, Attempt, Batch, Job, JobStatus, NewJob, check_ids, check_name, encode_payload, new_job
from ..runtime.registry import Registry
from . import policy

ENQUEUE_OPTIONS = frozenset({"payload", "run_at", "delay", "queue", "priority", "owner", "max_attempts",
                             "depends_on", "unique_key", "concurrency_key"})
STATS_WINDOWS = ("1m", "5m", "1h")


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of a newest-first listing: its rows, and the cursor of the next page (None: this
    is the last)."""

    rows: list
    next_cursor: int | None


def plan_job(registry: Registry, function: str, payload: Mapping[str, Any] | None,
             options: Mapping[str, Any]) -> NewJob:
    """Validate a request, taking queue, priority and max_attempts from the function's
    registration when it is known here and the caller did not say."""
    unknown = set(options) - ENQUEUE_OPTIONS
    if unknown:
        raise InvalidInput(f"unknown enqueue option(s): {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(sorted(ENQUEUE_OPTIONS - {'payload'}))}")
    defaults = {}
    registered = registry.find(function) if isinstance(function, str) else None
    if registered is not None:
        defaults = {"queue": registered.queue, "priority": registered.priority,
                    "max_attempts": registered.max_attempts}
    return new_job(function, payload, **{**defaults, **{k: v for k, v in options.items() if v is not None}})


def plan_batch(registry: Registry, items: Iterable[Mapping[str, Any]]) -> Batch:
    """Validate a bulk enqueue. Items sharing a function and options (the usual case) are
    validated once, then only their payloads are encoded."""
    batch = Batch()
    validated: dict[tuple, NewJob] = {}
    for index, item in enumerate(items):
        if not isinstance(item, Mapping) or "function" not in item:
            raise InvalidInput(f"job {index} must be a mapping with a 'function' key")
        options = {k: v for k, v in item.items() if k != "function" and k != "payload"}
        key = (item["function"], *options.items())
        try:
            template = validated.get(key)
        except TypeError:  # an unhashable option (a list of dependencies): no sharing
            key, template = None, None
        if template is None:
            template = plan_job(registry, item["function"], None, options)
            if key is not None:
                validated[key] = template
        if template.is_simple and key is not None:
            group = batch.groups.get(key)
            if group is None:
                group = batch.groups[key] = (template, [], [])
            group[1].append(encode_payload(item.get("payload")))
            group[2].append(index)
        else:
            batch.singles.append((index, template.with_payload(item.get("payload"))))
        batch.size = index + 1
    return batch


class Jobs:
    def __init__(self, store: Store, registry: Registry):
        self.store = store
        self.registry = registry

    # -- making jobs --------------------------------------------------------------------------

    async def enqueue(self, caller: Principal, function: str, payload: Mapping[str, Any] | None = None, *,
                      conn: psycopg.AsyncConnection | None = None, **options: Any) -> Job:
        """Enqueue one job; with ``conn``, inside that connection's current transaction. A user's
        job is always theirs, may depend only on their own jobs, and may not be a built-in."""
        if not caller.is_service:
            options["owner"] = await self._users_owner(caller, function, options)
        new = plan_job(self.registry, function, payload, options)
        if conn is not None:
            return await store_module.job_insert_on(conn, new)
        return await self.store.job_insert(new)

    async def enqueue_many(self, caller: Principal, items: Iterable[Mapping[str, Any]], *,
                           conn: psycopg.AsyncConnection | None = None) -> list[int]:
        """Enqueue many jobs in one transaction; their ids, in the order given (the service's)."""
        policy.check_service(caller, "a bulk enqueue")
        batch = plan_batch(self.registry, items)
        if conn is not None:
            return await store_module.job_insert_many_on(conn, batch)
        return await self.store.job_insert_many(batch)

    async def _users_owner(self, caller: Principal, function: str, options: Mapping[str, Any]) -> str | None:
        owner = policy.owner_of_new(caller, options.get("owner"), "job")
        policy.check_target(caller, function)
        if options.get("concurrency_key") is not None:
            # A key is shared by every owner's jobs (a per-key limit counts them together), so a
            # user who could name one could hold another tenant's slot.
            policy.check_service(caller, "setting a concurrency_key")
        depends_on = options.get("depends_on")
        wanted = [depends_on] if isinstance(depends_on, int) else list(depends_on or ())
        if wanted:
            found = await self.store.job_filter_owned(check_ids(wanted, "depends_on id"), owner=owner)
            missing = set(wanted) - found  # another user's answers as one that does not exist
            if missing:
                raise InvalidInput(f"depends_on names jobs that do not exist: {sorted(missing)}")
        return owner

    # -- reading ------------------------------------------------------------------------------

    async def get(self, caller: Principal, job_id: int) -> Job:
        return await self.store.job_get(job_id, owner=policy.scope(caller))

    async def attempts(self, caller: Principal, job_id: int) -> list[Attempt]:
        """The job's finished attempts, in order (none when it is not the caller's)."""
        return await self.store.attempt_list(job_id, owner=policy.scope(caller))

    async def list(self, caller: Principal, *, statuses: Sequence[str] | None = None, function: str | None = None,
                   queue: str | None = None, owner: str | None = None, created_after: dt.datetime | None = None,
                   created_before: dt.datetime | None = None, before_id: int | None = None,
                   include_archived: bool = False, limit: int = 50, error: str | None = None) -> Page:
        """Jobs newest first, each as (Job, whether a live worker serves its function), one page
        at a time (keyset: ``before_id`` is the previous page's ``next_cursor``); with ``error``,
        only those whose last error holds that text."""
        for value, what in ((function, "function"), (queue, "queue"), (owner, "owner")):
            if value is not None:
                check_name(value, what)
        owner, visible = policy.listing_owner(caller, owner)
        if not visible:
            return Page([], None)
        rows = await self.store.job_list(
            statuses=list(statuses) if statuses else None, function=function, queue=queue, owner=owner,
            created_after=_utc(created_after), created_before=_utc(created_before), before_id=before_id,
            include_archived=include_archived, limit=limit + 1, error=error or None)  # one more: is there a next page?
        page = rows[:limit]
        return Page(page, page[-1][0].id if len(rows) > limit else None)

    async def stats(self, caller: Principal, *, live_only: bool = False) -> dict[str, Any]:
        """Unarchived jobs by status and by function; jobs that succeeded and failed in the last
        minute, 5 minutes and hour, with the failure rate; the age of the oldest due pending job.
        ``live_only`` counts only the waiting, pending and running jobs (the other statuses are
        left out): cheap at any table size, where counting every unarchived job is not."""
        owner = policy.scope(caller)
        count = self.store.job_count_live if live_only else self.store.job_count_unarchived
        counts, row = await asyncio.gather(count(owner=owner), self.store.job_stats(owner=owner))
        statuses = [s.value for s in JobStatus if not live_only or s.value in LIVE_STATUSES]
        by_status = dict.fromkeys(statuses, 0)
        by_function: dict[str, dict[str, int]] = {}
        for function, status, n in counts:
            by_status[status] += n
            by_function.setdefault(function, dict.fromkeys(statuses, 0))[status] = n
        windows = {}
        for window in STATS_WINDOWS:
            succeeded, failed = row[f"succeeded_{window}"], row[f"failed_{window}"]
            windows[window] = {"succeeded": succeeded, "failed": failed,
                               "failure_rate": failure_rate(succeeded, failed)}
        oldest = row["oldest_due_seconds"]
        return {"owner": policy.scope(caller), "by_status": by_status, "by_function": by_function,
                "windows": windows, "oldest_due_pending_seconds": round(oldest, 3) if oldest is not None else None}

    async def functions(self, caller: Principal) -> list[dict]:
        """Every function known to the database, with job counts and live workers."""
        policy.check_service(caller, "listing functions")
        return await self.store.function_list()

    # -- steering (another user's job answers as one that does not exist) -----------------------

    async def retry(self, caller: Principal, job_id: int) -> Job:
        """Run a failed or cancelled job again (its attempts start over)."""
        return await self.store.job_retry(job_id, owner=policy.scope(caller))

    async def cancel(self, caller: Principal, job_id: int) -> Job:
        """Cancel a waiting, pending or running job (and the jobs that depend on it)."""
        return await self.store.job_cancel(job_id, owner=policy.scope(caller))

    async def run_now(self, caller: Principal, job_id: int) -> Job:
        """Make a pending job due now; the service's "run now" takes it even from a paused queue."""
        return await self.store.job_run_now(job_id, owner=policy.scope(caller),
                                            past_pause=policy.may_pass_pauses(caller))

    async def archive(self, caller: Principal, job_id: int) -> Job:
        """Hide a finished job from listings and counts (it is still pruned on schedule)."""
        return await self.store.job_archive(job_id, owner=policy.scope(caller))


def failure_rate(succeeded: int, failed: int) -> float | None:
    """The share of finished jobs that failed for good (None when none finished)."""
    total = succeeded + failed
    return round(failed / total, 4) if total else None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value
