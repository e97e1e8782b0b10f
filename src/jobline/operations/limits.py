"""Flow control: the limits the claim enforces across every worker (0019_flow_control.sql).

Anyone may read the limits on their own jobs (a user learns why they wait); setting or removing one holds
back every owner's work, so it is the service's. Limits declared in code are reconciled when a
worker or `jobline serve` starts; a limit set here at run time wins over code on the same
(scope, target, per_key) until it is removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..auth import Principal
from ..db.store import Store
from ..errors import NotFound
from ..limit import LimitSpec, check_limit, limit_from_row
from . import policy


class Limits:
    def __init__(self, store: Store):
        self.store = store

    async def list(self, caller: Principal) -> list[dict[str, Any]]:
        """The limits, functions first then queues: every one for the service; for a user, those
        on a function or queue of one of their own jobs (as queue listings show a user only the
        queues of their jobs, a user never learns another tenant's names)."""
        return [limit_from_row(row) for row in await self.store.limit_list(owner=policy.scope(caller))]

    async def set(self, caller: Principal, scope: Any, target: Any, *, per_key: Any = False, concurrency: Any = None,
                  rate_count: Any = None, rate_seconds: Any = None) -> dict[str, Any]:
        """Add or replace the limit on ``scope`` ('function' or 'queue') ``target``; every
        worker's next claim of its jobs enforces it."""
        policy.check_service(caller, "setting a limit")
        spec = check_limit(scope, target, per_key=per_key, concurrency=concurrency, rate_count=rate_count,
                           rate_seconds=rate_seconds)
        return limit_from_row(await self.store.limit_upsert(spec))

    async def remove(self, caller: Principal, scope: Any, target: Any, *, per_key: Any = False) -> dict[str, Any]:
        """Remove the limit on ``scope`` ``target`` (per key or not); NotFound when there is none.
        A limit declared in code comes back when a worker of that code starts again."""
        policy.check_service(caller, "removing a limit")
        check_limit(scope, target, per_key=per_key, concurrency=1)  # the same name rules
        row = await self.store.limit_delete(scope, target, per_key)
        if row is None:
            raise NotFound(f"no limit on {scope} {target!r}{' per key' if per_key else ''}; "
                           "`jobline limits ls` lists them")
        return limit_from_row(row)

    async def reconcile(self, caller: Principal, specs: Sequence[LimitSpec], owned_functions: Sequence[str],
                        owned_queues: Sequence[str]) -> list[tuple[str, str, bool, str]]:
        """Make the database's code limits match ``specs`` (see limit_reconcile_many.sql)."""
        policy.check_service(caller, "recording code limits")
        return await self.store.limit_reconcile_many(specs, owned_functions, owned_queues)
