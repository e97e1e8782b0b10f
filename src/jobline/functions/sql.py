"""The built-in ``sql`` function: runs its payload's ``command``, as the role its job acts for.

Payload: ``command`` (one or more statements, run in one transaction), optionally
``timeout_ms`` and ``database`` (another database on the same server, which the worker reaches
with its own credentials, as pg_cron's ``schedule_in_database`` asks). The job's ``username``
(the role that queued or scheduled it) decides who runs it: the worker's own role runs it
directly; any other role runs it as itself, never with the worker's privileges
(``Store.sql_run``).
"""

from __future__ import annotations

import json

from ..errors import Fail, Forbidden
from ..runtime.context import JobContext

NAME = "sql"
_FIELDS = frozenset({"command", "timeout_ms", "database"})


async def run_sql(payload: dict, ctx: JobContext) -> dict:
    command = payload.get("command")
    if not isinstance(command, str) or not command.strip():
        raise Fail("the sql function needs a payload like {\"command\": \"SELECT 1\"}")
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        raise Fail(f"sql payload: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_FIELDS))}")
    timeout = payload.get("timeout_ms")
    if timeout is not None and not (isinstance(timeout, int) and 0 < timeout <= 86_400_000):
        raise Fail("timeout_ms must be a whole number of milliseconds between 1 and 86400000")
    database = payload.get("database")
    if database is not None and not (isinstance(database, str) and 0 < len(database) <= 63 and "\x00" not in database):
        raise Fail("database must be the name of a database on jobline's server")
    try:
        outcome = await ctx.require_store().sql_run(command, job_id=ctx.job_id, database=database,
                                                    timeout=timeout / 1000 if timeout else None)
    except Forbidden as refused:  # the role cannot be acted for: retrying will not help
        raise Fail(str(refused)) from None
    # Rows hold what PostgreSQL returns (timestamps, numerics, UUIDs...): store their text.
    outcome["rows"] = json.loads(json.dumps(outcome["rows"], default=str))
    return outcome
