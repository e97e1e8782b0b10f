"""Who may do what: the one place where a caller's identity decides what an operation may read
and write, and what it shows of a row.

- The service (the service key, a service-role JWT, and the operator's own code, CLI and SQL)
  acts on every owner's rows and may give a new row any owner, or none.
- A user acts only on rows they own. Reads are scoped to their owner in SQL, so another user's
  row answers exactly as a row that does not exist; a new row is always theirs (naming another
  owner is Forbidden).
- The built-ins are the service's: ``sql`` runs any SQL, and ``http`` would let a user choose
  where the operator's network and secrets go.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..auth import Principal
from ..errors import Forbidden
from ..job import SERVICE_ONLY_FUNCTIONS, Attempt, Job
from ..schedule import Schedule, ScheduleRun


def scope(caller: Principal) -> str | None:
    """The owner every read made for ``caller`` is scoped to (None: every owner)."""
    return caller.owner


def owner_of_new(caller: Principal, requested: str | None, what: str) -> str | None:
    """The owner a new row (a job, a schedule, a secret) made by ``caller`` gets."""
    if caller.is_service:
        return requested
    if requested is not None and requested != caller.owner:
        raise Forbidden(f"a user's {what} belongs to that user: leave out `owner` or give your own user id")
    return caller.owner


def listing_owner(caller: Principal, requested: str | None) -> tuple[str | None, bool]:
    """The owner a listing filters on, and whether it can show anything at all: a user asking
    for another owner's rows gets none (and learns nothing)."""
    if caller.is_service:
        return requested, True
    return caller.owner, requested is None or requested == caller.owner


def check_target(caller: Principal, function: str | None, *, sql: bool = False, what: str = "enqueue") -> None:
    """Forbidden unless ``caller`` may make work for ``function`` (or run SQL)."""
    if caller.is_service:
        return
    if sql:
        raise Forbidden(f"only the service may {what} SQL commands")
    if function in SERVICE_ONLY_FUNCTIONS:
        raise Forbidden(f"only the service may {what} the built-in {function!r} function")


def may_pass_pauses(caller: Principal) -> bool:
    """Whether ``caller``'s "run now" runs a job of a paused queue (the operator's manual tool,
    seed 001's playbook); a user's waits, like their other jobs, for the queue to resume."""
    return caller.is_service


def check_service(caller: Principal, what: str) -> None:
    if not caller.is_service:
        raise Forbidden(f"{what} needs the service key (or a service_role JWT); a user's credential cannot do it")


# -- what a caller sees of a row ---------------------------------------------------------------


def public_job(job: Job) -> dict[str, Any]:
    """Job.to_dict() for a caller of the API: a remote claim's worker_id is its lease token, the
    claimant's alone to know, so it reads "remote"."""
    out = job.to_dict()
    out["worker_id"] = public_worker_id(out["worker_id"])
    return out


def public_attempt(attempt: Attempt, caller: Principal) -> dict[str, Any]:
    """Attempt.to_dict() for ``caller``: the worker id as in :func:`public_job`, and the
    traceback, which names the server's files, for the service only."""
    out = attempt.to_dict()
    out["worker_id"] = public_worker_id(out["worker_id"])
    if not caller.is_service:
        del out["traceback"]
    return out


def public_schedule(schedule: Schedule, caller: Principal, last: ScheduleRun | None = None,
                    now: dt.datetime | None = None) -> dict[str, Any]:
    """Schedule.summary() for ``caller``: a user sees their own schedule's name without its
    ``<user>/`` prefix (schedule.name_seen_by)."""
    return schedule.summary(last, now, viewer=scope(caller))


def public_worker_id(worker_id: str | None) -> str | None:
    return "remote" if worker_id is not None and worker_id.startswith("remote:") else worker_id
