"""Pipelines as a caller acts on them: list, start a run, read runs, cancel and retry them.

A run is started by jobline.start_pipeline (migration 0021) whoever starts it, and its status
and history are kept by the database as its steps (jobs) move. A user's run is theirs: they
see and steer only their own runs; the service sees and steers every run, and may start one for
any owner. The steps of a pipeline are the operator's (declared in code), so a user may start
any recorded pipeline: what a user brings is the run's payload, which a step of a built-in
function (sql, http) never receives (migration 0021).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from ..auth import Principal
from ..db import store as store_module
from ..db.store import Store
from ..errors import Conflict
from ..job import MAX_NAME_LENGTH, check_int, check_name, encode_payload, jsonable
from ..pipeline import check_run_status
from . import policy
from .jobs import Page

MAX_REASON_LENGTH = 500
MAX_PAGE = 500


def start_params(caller: Principal, name: Any, payload: Mapping[str, Any] | None,
                 owner: str | None) -> tuple[str, str, str | None]:
    """Validate a start request: (name, payload as JSON text, owner of the run)."""
    name = check_name(name, "pipeline name", MAX_NAME_LENGTH)
    owner = policy.owner_of_new(caller, owner, "pipeline run")
    if owner is not None:
        check_name(owner, "owner")
    return name, encode_payload(payload), owner


class Pipelines:
    def __init__(self, store: Store):
        self.store = store

    async def list(self, caller: Principal) -> list[dict[str, Any]]:
        """Every recorded pipeline: its steps, and how many runs (the caller's) it has, with the
        newest one's id and status."""
        rows = await self.store.pipeline_list(owner=policy.scope(caller))
        out = [{k: jsonable(v) for k, v in row.items()} for row in rows]
        if not caller.is_service:  # a user sees the graph, not what the operator wrote into steps
            for row in out:
                row["steps"] = [{k: v for k, v in step.items() if k != "payload"} for step in row["steps"]]
        return out

    async def start(self, caller: Principal, name: str, payload: Mapping[str, Any] | None = None, *,
                    owner: str | None = None, conn: psycopg.AsyncConnection | None = None) -> dict[str, Any]:
        """Start a run: every step becomes a job, in one transaction (with ``conn``, the caller's
        own). Returns the run."""
        name, payload_json, owner = start_params(caller, name, payload, owner)
        if conn is not None:
            run_id = await store_module.pipeline_start_on(conn, name, payload_json, owner)
            return {"id": run_id, "pipeline": name, "owner": owner, "status": "running"}
        run_id = await self.store.pipeline_start(name, payload_json, owner=owner)
        return await self.get(caller, run_id)

    async def runs(self, caller: Principal, *, pipeline: str | None = None, status: str | None = None,
                   owner: str | None = None, before_id: int | None = None, limit: int = 50) -> Page:
        """Runs newest first, one page at a time (``before_id`` is the previous page's
        ``next_cursor``), filtered by pipeline, status and (for the service) owner."""
        if pipeline is not None:
            check_name(pipeline, "pipeline")
        if status is not None:
            check_run_status(status)
        if owner is not None:
            check_name(owner, "owner")
        if before_id is not None:
            check_int(before_id, "cursor", 1, 2**63 - 1)
        check_int(limit, "limit", 1, MAX_PAGE)
        owner, visible = policy.listing_owner(caller, owner)
        if not visible:
            return Page([], None)
        rows = await self.store.pipeline_run_list(owner=owner, pipeline=pipeline, status=status,
                                                  before_id=before_id, limit=limit + 1)
        page = [_run_summary(row) for row in rows[:limit]]
        return Page(page, page[-1]["id"] if len(rows) > limit else None)

    async def get(self, caller: Principal, run_id: int) -> dict[str, Any]:
        """A run with each step (its job's status, result, attempts and times, in the declared
        order) and its history."""
        check_int(run_id, "run id", 1, 2**63 - 1)
        run = await self.store.pipeline_run_get(run_id, owner=policy.scope(caller))
        jobs = {row["step"]: row for row in await self.store.pipeline_run_steps(run_id)}
        steps = []
        for declared in run["steps"]:
            job = jobs.get(declared["name"])
            step = {"name": declared["name"], "function": declared["function"], "after": declared.get("after", []),
                    "delay": declared.get("delay", 0)}
            if job is None:  # removed by retention
                step.update(job_id=None, status="pruned", attempts=None, max_attempts=None, result=None,
                            error=None, run_at=None, started_at=None, finished_at=None)
            else:
                step.update(job_id=job["job_id"], status=job["status"], attempts=job["attempts"],
                            max_attempts=job["max_attempts"], result=job["result"], error=job["last_error"],
                            run_at=jsonable(job["run_at"]), started_at=jsonable(job["started_at"]),
                            finished_at=jsonable(job["finished_at"]))
            steps.append(step)
        history = [{k: jsonable(v) for k, v in row.items()} for row in await self.store.pipeline_history_list(run_id)]
        out = {k: jsonable(v) for k, v in run.items() if k != "steps"}
        return {**out, "steps": steps, "history": history}

    async def cancel(self, caller: Principal, run_id: int, reason: str | None = None) -> dict[str, Any]:
        """Cancel a running run's unfinished steps (a running step's attempt is fenced out, as
        for a cancelled job)."""
        check_int(run_id, "run id", 1, 2**63 - 1)
        if reason is not None:
            check_name(reason, "reason", MAX_REASON_LENGTH)
        run = await self.store.pipeline_run_get(run_id, owner=policy.scope(caller))
        if run["status"] != "running":
            raise Conflict(f"cannot cancel pipeline run {run_id}: it is {run['status']}; only running runs can be")
        await self.store.pipeline_run_cancel(run_id, reason or f"the pipeline run was cancelled by {_who(caller)}")
        return await self.get(caller, run_id)

    async def retry(self, caller: Principal, run_id: int) -> dict[str, Any]:
        """Run a failed or cancelled run again from its failed and cancelled steps, keeping the
        results its succeeded steps made."""
        check_int(run_id, "run id", 1, 2**63 - 1)
        run = await self.store.pipeline_run_get(run_id, owner=policy.scope(caller))
        if run["status"] not in ("failed", "cancelled"):
            raise Conflict(f"cannot retry pipeline run {run_id}: it is {run['status']}; "
                           "only failed or cancelled runs can be")
        if len(await self.store.pipeline_run_steps(run_id)) < len(run["steps"]):
            raise Conflict(f"cannot retry pipeline run {run_id}: retention removed some of its steps' jobs "
                           "(and their results); start a new run")
        if await self.store.pipeline_run_retry(run_id) == 0:
            raise Conflict(f"cannot retry pipeline run {run_id}: none of its steps failed or was cancelled "
                           "(retention may have removed them)")
        return await self.get(caller, run_id)


def _run_summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in row.items()}


def _who(caller: Principal) -> str:
    return "the service" if caller.is_service else "its owner"

