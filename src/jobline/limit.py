"""Flow-control limits as Python sees them, and their validation (pure: no I/O).

A limit caps the jobs of one function or one queue, optionally separately for each
``concurrency_key``: at most ``concurrency`` running at once, and/or at most ``rate_count``
starts in any ``rate_seconds`` window. The claim enforces them in the database
(0019_flow_control.sql); the rules here mirror that migration's CHECK constraints, so a bad
value gets a clear message before it reaches PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput
from .job import MAX_NAME_LENGTH, MAX_QUEUE_LENGTH, check_int, check_name

SCOPES = ("function", "queue")
CONCURRENCY_RANGE = (1, 100_000)
RATE_COUNT_RANGE = (1, 1_000_000)
RATE_SECONDS_RANGE = (0.001, 86_400.0)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smhd]?)\s*$")


@dataclasses.dataclass(frozen=True, slots=True)
class LimitSpec:
    """One limit: ``scope`` ('function' or 'queue') names what ``target`` is."""

    scope: str
    target: str
    per_key: bool = False
    concurrency: int | None = None
    rate_count: int | None = None
    rate_seconds: float | None = None

    @property
    def identity(self) -> tuple[str, str, bool]:
        """What names a limit: one per scope, target and per_key."""
        return (self.scope, self.target, self.per_key)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def limit_spec(*, function: str | None = None, queue: str | None = None, concurrency: int | None = None,
               rate: tuple[int, float] | str | None = None, per_key: bool = False) -> LimitSpec:
    """Validate a limit given as in code: exactly one of ``function`` and ``queue``, and at least
    one of ``concurrency`` (jobs running at once) and ``rate`` ((count, seconds), or text such as
    "30/1m"); ``per_key`` applies it to each concurrency_key separately."""
    if (function is None) == (queue is None):
        raise InvalidInput("a limit names exactly one of function and queue")
    scope, target = ("function", function) if function is not None else ("queue", queue)
    rate_count = rate_seconds = None
    if rate is not None:
        rate_count, rate_seconds = parse_rate(rate) if isinstance(rate, str) else _rate_pair(rate)
    return check_limit(scope, target, per_key=per_key, concurrency=concurrency, rate_count=rate_count,
                       rate_seconds=rate_seconds)


def check_limit(scope: Any, target: Any, *, per_key: Any = False, concurrency: Any = None, rate_count: Any = None,
                rate_seconds: Any = None) -> LimitSpec:
    """Validate a limit field by field (the CLI, the HTTP API and code all end here)."""
    if scope not in SCOPES:
        raise InvalidInput(f"a limit's scope must be 'function' or 'queue', got {scope!r}")
    target = check_name(target, scope if scope == "queue" else "function name",
                        MAX_QUEUE_LENGTH if scope == "queue" else MAX_NAME_LENGTH)
    if not isinstance(per_key, bool):
        raise InvalidInput(f"per_key must be true or false, got {per_key!r}")
    if concurrency is not None:
        check_int(concurrency, "concurrency", *CONCURRENCY_RANGE)
    if (rate_count is None) != (rate_seconds is None):
        raise InvalidInput("a rate limit needs both a count and a period in seconds")
    if rate_count is not None:
        check_int(rate_count, "rate count", *RATE_COUNT_RANGE)
        if isinstance(rate_seconds, bool) or not isinstance(rate_seconds, (int, float)) \
                or not RATE_SECONDS_RANGE[0] <= rate_seconds <= RATE_SECONDS_RANGE[1]:
            raise InvalidInput(f"a rate's period must be between {RATE_SECONDS_RANGE[0]:g} and "
                               f"{RATE_SECONDS_RANGE[1]:g} seconds, got {rate_seconds!r}")
        rate_seconds = float(rate_seconds)
    if concurrency is None and rate_count is None:
        raise InvalidInput(f"a limit on {scope} {target!r} needs a concurrency, a rate, or both")
    return LimitSpec(scope, target, per_key, concurrency, rate_count, rate_seconds)


def _rate_pair(rate: Any) -> tuple[Any, Any]:
    if not isinstance(rate, (tuple, list)) or len(rate) != 2:
        raise InvalidInput(f"a rate is (count, seconds), such as (30, 60) for 30 starts a minute, got {rate!r}")
    return rate[0], rate[1]


def parse_rate(text: str) -> tuple[int, float]:
    """'30/60' or '30/60s' (30 starts in any 60 seconds), '30/m', '30/1m', '1000/1h', '5/0.5s'."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"a rate is COUNT/PERIOD such as 30/60s, 30/1m or 1000/1h, got {text!r}")
    count, amount, unit = match.groups()
    seconds = float(amount or 1) * _UNITS[unit]
    if amount is None and not unit:
        raise InvalidInput(f"a rate's period is missing in {text!r}: write 30/60s, 30/1m or 1000/1h")
    return int(count), seconds


def limit_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A limits row as the CLI's --json and the HTTP API show it."""
    out = {k: row[k] for k in ("scope", "target", "per_key", "concurrency", "rate_count", "rate_seconds", "source")}
    out["updated_at"] = row["updated_at"].isoformat() if row.get("updated_at") is not None else None
    return out


def describe(row: Mapping[str, Any]) -> str:
    """One line for listings: 'at most 5 running, 30 starts per 60 s, per key'."""
    parts = []
    if row.get("concurrency") is not None:
        parts.append(f"at most {row['concurrency']} running")
    if row.get("rate_count") is not None:
        parts.append(f"{row['rate_count']} starts per {row['rate_seconds']:g} s")
    if row.get("per_key"):
        parts.append("per key")
    return ", ".join(parts)
