"""Schedules as a caller acts on them: add, read, list, steer, remove. A schedule is addressed by
name or id (``ref``). Every method takes the caller first; policy.py decides what it may do.

Names: the service's are global, as in SQL and pg_cron. A user's are their own: the schedule a
user names ``nightly`` is ``<user>/nightly`` globally (schedule.owned_name), and is shown to
that user as ``nightly`` (policy.public_schedule), so another owner's names are neither revealed
by a conflict nor taken.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..auth import Principal
from ..errors import InvalidInput
from ..pipeline import PIPELINE_FUNCTION, starter_payload
from ..db.store import Store
from ..runtime.registry import Registry
from ..schedule import Schedule, ScheduleRun, ScheduleSpec, in_namespace, new_schedule
from . import policy
from .jobs import Page


def schedule_spec(registry: Registry, name: str | None, expression: str, function: str | None,
                  payload: Mapping[str, Any] | None, options: Mapping[str, Any]) -> ScheduleSpec:
    """Validate a schedule; its jobs take queue, priority and max_attempts from the target
    function's registration when it is known here and the caller did not say. With the option
    ``pipeline``, each tick starts a run of that pipeline with ``payload`` (a job of the
    built-in ``pipeline`` function, pipeline.starter_payload)."""
    if options.get("pipeline") is not None:
        options = dict(options)
        if function is not None or options.get("sql") is not None:
            raise InvalidInput("a schedule targets one of a function, a SQL command or a pipeline")
        function, payload = PIPELINE_FUNCTION, starter_payload(options.pop("pipeline"), payload)
    options = {k: v for k, v in options.items() if k != "pipeline"}
    registered = registry.find(function) if isinstance(function, str) else None
    if registered is not None:
        options = {"queue": registered.queue, "priority": registered.priority,
                   "max_attempts": registered.max_attempts, **options}
    return new_schedule(name, expression, function, payload, **options)


class Schedules:
    def __init__(self, store: Store, registry: Registry):
        self.store = store
        self.registry = registry

    async def add(self, caller: Principal, name: str | None, expression: str, function: str | None = None,
                  payload: Mapping[str, Any] | None = None, *, sql: str | None = None, owner: str | None = None,
                  replace: bool = False, **options: Any) -> Schedule:
        """Add a schedule: each tick enqueues ``function`` with ``payload`` (or runs ``sql``, the
        service's alone); with ``replace``, one of the same name (a user's: of their own) is
        replaced. Options as App.schedule, plus ``active``."""
        owner = policy.owner_of_new(caller, owner, "schedule")
        policy.check_target(caller, function, sql=sql is not None, what="schedule")
        spec = schedule_spec(self.registry, name, expression, function, payload, {**options, "sql": sql,
                                                                                   "owner": owner})
        if not caller.is_service:
            spec = in_namespace(spec, caller.owner)
        return await self.store.schedule_upsert(spec, replace=replace, scope=policy.scope(caller))

    async def get(self, caller: Principal, ref: str | int) -> Schedule:
        """A schedule by name (a user's: one of their own first) or id."""
        return await self.store.schedule_get(ref, owner=policy.scope(caller))

    async def list(self, caller: Principal) -> list[tuple[Schedule, ScheduleRun | None]]:
        """Every schedule (a user's own), with its latest run."""
        return await self.store.schedule_list(owner=policy.scope(caller))

    async def runs(self, caller: Principal, ref: str | int, *, limit: int = 20,
                   before_id: int | None = None) -> Page:
        """Its runs (ticks and triggers), newest first, with their jobs' state."""
        schedule = await self.get(caller, ref)
        runs = await self.store.schedule_run_list(schedule.id, limit=limit + 1, before_id=before_id,
                                                  owner=policy.scope(caller))  # one more: a next page?
        page = runs[:limit]
        return Page(page, page[-1].id if len(runs) > limit else None)

    async def pause(self, caller: Principal, ref: str | int) -> Schedule:
        """No ticks until it is resumed."""
        return await self._set_active(caller, ref, False)

    async def resume(self, caller: Principal, ref: str | int) -> Schedule:
        """Ticks start again from now; those of the pause are not caught up."""
        return await self._set_active(caller, ref, True)

    async def trigger(self, caller: Principal, ref: str | int) -> tuple[Schedule, int]:
        """Run it once now, outside its ticks (a triggered run; works when paused): the schedule
        and the new job's id."""
        schedule = await self.get(caller, ref)
        return schedule, await self.store.schedule_trigger(schedule.id, owner=policy.scope(caller))

    async def remove(self, caller: Principal, ref: str | int) -> Schedule:
        """Remove it and its run history; its jobs stay."""
        schedule = await self.get(caller, ref)
        await self.store.schedule_delete(schedule.id, owner=policy.scope(caller))
        return schedule

    async def _set_active(self, caller: Principal, ref: str | int, active: bool) -> Schedule:
        schedule = await self.get(caller, ref)
        return await self.store.schedule_set_active(schedule.id, active, owner=policy.scope(caller))
