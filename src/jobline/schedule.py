"""Schedules as Python sees them: validation of a definition, the row types, and the plan for a
due schedule (which ticks run now and which were missed). Pure: no I/O.

Catch-up after downtime, per schedule: ``latest`` (default) runs the most recent missed tick
once; ``none`` runs a tick only if it is handled within MISFIRE_SECONDS of its time; ``all``
runs up to ``catch_up_max`` of the most recent ticks. Ticks not run are recorded as one
``missed`` run saying how many and from when to when.

Names: a schedule's ``name`` is global, as pg_cron's job names are: SQL, the CLI, code and the
service use it as it is. A user's schedules made through the HTTP API have names of their own
(per owner), stored under the global name ``<owner>/<name>`` (:func:`owned_name`), so that a
user's name never collides with the service's or another user's: a taken name reveals nothing
and cannot be squatted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

from .cron import Cron
from .errors import InvalidInput
from .job import (MAX_ATTEMPTS_RANGE, MAX_QUEUE_LENGTH, PRIORITY_RANGE, check_int, check_name, encode_payload,
                  jsonable)

OVERLAP_POLICIES = ("skip", "allow")
CATCH_UP_POLICIES = ("latest", "none", "all")
CATCH_UP_MAX_RANGE = (1, 1000)
MAX_CONSECUTIVE_FAILURES_RANGE = (1, 1000)  # as jobline.set_max_consecutive_failures (None: never)
MISFIRE_SECONDS = 60.0     # with catch-up none, a tick handled later than this does not run
MAX_COUNTED_TICKS = 1000   # missed ticks are counted one by one up to this many
OWNER_SEPARATOR = "/"      # a user's schedule is named <owner>/<name> globally (owned_name)
_MICROSECOND = dt.timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A validated schedule definition (see :func:`new_schedule`)."""

    name: str | None
    expression: str
    timezone: str
    function: str
    payload_json: str
    owner: str | None
    queue: str
    priority: int
    max_attempts: int
    overlap: str
    catch_up: str
    catch_up_max: int
    active: bool
    max_consecutive_failures: int | None = None


def new_schedule(name: str | None, expression: str, function: str | None = None,
                 payload: Mapping[str, Any] | None = None, *, sql: str | None = None, timezone: str = "UTC",
                 owner: str | None = None, queue: str = "default", priority: int = 0, max_attempts: int = 3,
                 overlap: str = "skip", catch_up: str = "latest", catch_up_max: int = 10,
                 active: bool = True, max_consecutive_failures: int | None = None) -> ScheduleSpec:
    """Validate a schedule: InvalidInput names the bad part. The target is ``function`` with
    ``payload``, or a SQL command (``sql``), which runs as the built-in ``sql`` function. With
    ``max_consecutive_failures`` N, the schedule pauses itself after N failed runs in a row
    (0020_notifications.sql); None: never."""
    if (function is None) == (sql is None):
        raise InvalidInput("a schedule needs a target: a function name or a SQL command (not both)")
    if sql is not None:
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidInput("the schedule's SQL command is empty")
        if payload:
            raise InvalidInput("a SQL schedule takes no payload (its payload is the command)")
        function, payload = "sql", {"command": sql}
    if not isinstance(expression, str):
        raise InvalidInput(f"the cron expression must be a string, got {type(expression).__name__}")
    cron = Cron.parse(expression, timezone)
    if overlap not in OVERLAP_POLICIES:
        raise InvalidInput(f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {overlap!r}")
    if catch_up not in CATCH_UP_POLICIES:
        raise InvalidInput(f"catch_up must be one of {', '.join(CATCH_UP_POLICIES)}, got {catch_up!r}")
    return ScheduleSpec(
        name=None if name is None else check_name(name, "schedule name"),
        expression=" ".join(cron.expression.split()),
        timezone=cron.timezone,
        function=check_name(function, "function name"),
        payload_json=encode_payload(payload),
        owner=None if owner is None else check_name(owner, "owner"),
        queue=check_name(queue, "queue", MAX_QUEUE_LENGTH),
        priority=check_int(priority, "priority", *PRIORITY_RANGE),
        max_attempts=check_int(max_attempts, "max_attempts", *MAX_ATTEMPTS_RANGE),
        overlap=overlap,
        catch_up=catch_up,
        catch_up_max=check_int(catch_up_max, "catch_up_max", *CATCH_UP_MAX_RANGE),
        active=bool(active),
        max_consecutive_failures=None if max_consecutive_failures is None else check_int(
            max_consecutive_failures, "max_consecutive_failures", *MAX_CONSECUTIVE_FAILURES_RANGE),
    )


def owned_name(owner: str, name: str) -> str:
    """The global name (SQL's, the CLI's) of the schedule that user ``owner`` names ``name``.

    >>> owned_name("alice", "nightly")
    'alice/nightly'
    """
    return f"{owner}{OWNER_SEPARATOR}{name}"


def name_seen_by(owner: str | None, name: str | None) -> str | None:
    """The global ``name`` as user ``owner`` sees it (None: the service, which sees it as is):
    one of their own, ``<owner>/<name>``, without its prefix.

    >>> name_seen_by("alice", "alice/nightly"), name_seen_by(None, "alice/nightly")
    ('nightly', 'alice/nightly')
    """
    if owner is None or name is None:
        return name
    local = name.removeprefix(owner + OWNER_SEPARATOR)
    return local if local != name and OWNER_SEPARATOR not in local else name


def in_namespace(spec: ScheduleSpec, owner: str) -> ScheduleSpec:
    """``spec`` as user ``owner``'s own schedule, under its global name (:func:`owned_name`). A
    user's name may not hold the separator: no path could address it, and ``<owner>/<name>`` is
    unambiguous only when the name part has none (an owner may hold one)."""
    if spec.name is None:
        return spec
    if OWNER_SEPARATOR in spec.name:
        raise InvalidInput(f"a user's schedule name cannot contain {OWNER_SEPARATOR!r}, got {spec.name!r}")
    return dataclasses.replace(spec, name=owned_name(owner, spec.name))


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    id: int
    name: str | None
    expression: str
    timezone: str
    function: str
    payload: dict
    owner: str | None
    queue: str
    priority: int
    max_attempts: int
    active: bool
    overlap: str
    catch_up: str
    catch_up_max: int
    source: str
    next_run_at: dt.datetime | None
    changed_at: dt.datetime
    created_at: dt.datetime
    # Pause after this many failed runs in a row (None: never); when and why it did.
    max_consecutive_failures: int | None = None
    deactivated_at: dt.datetime | None = None
    deactivated_reason: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        return cls(**{f: row[f] for f in _SCHEDULE_FIELDS})

    @property
    def label(self) -> str:
        """How messages name it: its name, or its id for pg_cron's nameless schedules."""
        return self.name if self.name is not None else f"#{self.id}"

    def upcoming(self, now: dt.datetime) -> dt.datetime | None:
        """When it fires next: its stored next tick, or (new or changed, not yet seen by a
        scheduler) the first tick after its change, which fires at once if already past."""
        if not self.active:
            return None
        try:
            cron = Cron.parse(self.expression, self.timezone)
        except InvalidInput:  # written past the validation; the scheduler pauses it: list it, unknown
            return None
        if cron.restart:
            return None  # at the next start of the PostgreSQL server, whenever that is
        if self.next_run_at is not None:
            return self.next_run_at
        return cron.next_after(self.changed_at)

    def to_dict(self) -> dict[str, Any]:
        return {f: jsonable(getattr(self, f)) for f in _SCHEDULE_FIELDS}

    def summary(self, last: ScheduleRun | None = None, now: dt.datetime | None = None, *,
                viewer: str | None = None) -> dict[str, Any]:
        """to_dict() with when it fires next and its latest run (the CLI's --json, the API), and
        its name as user ``viewer`` sees it (None: the service, the CLI), see name_seen_by."""
        upcoming = self.upcoming(now or dt.datetime.now(dt.timezone.utc))
        return {**self.to_dict(), "name": name_seen_by(viewer, self.name), "next_run": jsonable(upcoming),
                "last_run": last.to_dict() if last else None}


_SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(Schedule))


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRun:
    """One tick or manual trigger of a schedule, with its job's state when it made one."""

    id: int
    schedule_id: int
    tick_at: dt.datetime | None     # None: a manual trigger
    status: str                     # created | triggered | skipped | missed
    job_id: int | None
    message: str | None
    created_at: dt.datetime
    job_status: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    result: Any
    last_error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleRun:
        return cls(**{f: row[f] for f in _RUN_FIELDS})

    @property
    def outcome(self) -> str:
        """What happened, in one word: the job's status, or skipped / missed."""
        return self.job_status or (self.status if self.job_id is None else "pruned")

    def to_dict(self) -> dict[str, Any]:
        d = {f: jsonable(getattr(self, f)) for f in _RUN_FIELDS}
        d["outcome"] = self.outcome
        return d


_RUN_FIELDS = tuple(f.name for f in dataclasses.fields(ScheduleRun))


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a scheduler writes for one due schedule (see jobline.fire_schedule)."""

    ticks: list[dt.datetime]             # ticks to run now, oldest first
    next_run_at: dt.datetime             # the first tick after now
    missed_at: dt.datetime | None = None  # the first tick not run, if any
    missed_note: str | None = None


def plan(cron: Cron, *, next_run_at: dt.datetime | None, changed_at: dt.datetime, now: dt.datetime,
         catch_up: str = "latest", catch_up_max: int = 10) -> Plan:
    """Which ticks of a schedule run at ``now``, which were missed, and the next tick.

    ``next_run_at`` is the first tick not handled yet; None for a new or changed schedule, whose
    first tick is the first after ``changed_at``."""
    first = next_run_at if next_run_at is not None else cron.next_after(changed_at)
    if first > now:
        return Plan([], first)
    due, tick = [], first
    while tick <= now and len(due) < MAX_COUNTED_TICKS:
        due.append(tick)
        tick = cron.next_after(tick)
    if tick <= now:
        # Too many to count (a long downtime of a frequent schedule): find the latest ones
        # going back from now instead.
        upcoming = cron.next_after(now)
        latest = [cron.last_at_or_before(now)]
        while len(latest) < (catch_up_max if catch_up == "all" else 1):
            latest.insert(0, cron.last_at_or_before(latest[0] - _MICROSECOND))
        counted, due = f"more than {MAX_COUNTED_TICKS}", latest
    else:
        upcoming, counted = tick, None

    if catch_up == "all":
        run = due[-catch_up_max:]
    elif catch_up == "latest" or (now - due[-1]).total_seconds() <= MISFIRE_SECONDS:
        run = due[-1:]
    else:
        run = []
    if counted is None and len(run) == len(due):
        return Plan(run, upcoming)
    last_missed = due[-1] if not run else cron.last_at_or_before(run[0] - _MICROSECOND)
    count = counted or str(len(due) - len(run))
    limit = f", at most {catch_up_max}" if catch_up == "all" else ""
    note = (f"{count} tick(s) from {_iso(first)} to {_iso(last_missed)} were not run "
            f"(catch-up: {catch_up}{limit})")
    return Plan(run, upcoming, first, note)


def plan_restart(*, changed_at: dt.datetime, started_at: dt.datetime) -> Plan:
    """The plan of an ``@restart`` schedule: it fires once per start of the PostgreSQL server,
    as pg_cron's does when its background worker starts with the server.

    ``started_at`` is the server's start (pg_postmaster_start_time()), and is the tick: the run
    ledger's unique (schedule, tick) makes it fire exactly once per start however many schedulers
    see it. A schedule made (or changed, or resumed) after the server started waits for the next
    start. ``next_run_at`` records the start it was planned for; it is due again when the server
    has started since (schedule_list_due).
    """
    return Plan([started_at] if changed_at < started_at else [], started_at)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
