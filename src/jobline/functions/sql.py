"""The built-in ``sql`` function: runs its payload's ``command`` in jobline's database."""

from __future__ import annotations

import json

from ..errors import Fail
from ..runtime.context import JobContext

NAME = "sql"


async def run_sql(payload: dict, ctx: JobContext) -> dict:
    command = payload.get("command")
    if not isinstance(command, str) or not command.strip():
        raise Fail("the sql function needs a payload like {\"command\": \"SELECT 1\"}")
    timeout = payload.get("timeout_ms")
    if timeout is not None and not (isinstance(timeout, int) and 0 < timeout <= 86_400_000):
        raise Fail("timeout_ms must be a whole number of milliseconds between 1 and 86400000")
    outcome = await ctx.store.sql_run(command, timeout=timeout / 1000 if timeout else None)
    # Rows hold what PostgreSQL returns (timestamps, numerics, UUIDs...): store their text.
    outcome["rows"] = json.loads(json.dumps(outcome["rows"], default=str))
    return outcome
