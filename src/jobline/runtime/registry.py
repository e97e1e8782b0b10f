"""Functions a process can run: name, handler and the settings of their jobs."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from ..errors import FunctionNotFound, InvalidInput
from ..job import MAX_ATTEMPTS_RANGE, MAX_QUEUE_LENGTH, PRIORITY_RANGE, check_int, check_name
from ..retry import DEFAULT_BACKOFF, Backoff

MAX_TIMEOUT_SECONDS = 7 * 86400


@dataclasses.dataclass(frozen=True)
class Function:
    name: str
    handler: Callable[..., Any]
    max_attempts: int = 3
    timeout: float | None = None      # seconds; None: no limit
    backoff: Backoff = DEFAULT_BACKOFF
    queue: str = "default"
    priority: int = 0
    is_async: bool = False
    wants_context: bool = False        # handler(payload, ctx) rather than handler(payload)
    takes_payload: bool = True         # False for handler()
    # Whether GET|POST /functions/v1/<name> needs a credential (as Supabase's per-function
    # verify_jwt). Jobs are unaffected.
    verify_jwt: bool = True

    def __post_init__(self) -> None:
        check_name(self.name, "function name")
        check_int(self.max_attempts, "max_attempts", *MAX_ATTEMPTS_RANGE)
        check_name(self.queue, "queue", MAX_QUEUE_LENGTH)
        check_int(self.priority, "priority", *PRIORITY_RANGE)
        if self.timeout is not None and not (isinstance(self.timeout, (int, float)) and 0 < self.timeout <= MAX_TIMEOUT_SECONDS):
            raise InvalidInput(f"timeout of {self.name!r} must be a number of seconds between 0 and "
                               f"{MAX_TIMEOUT_SECONDS}, got {self.timeout!r}")
        if not callable(self.handler):
            raise InvalidInput(f"handler of {self.name!r} is not callable")

    @classmethod
    def from_handler(cls, name: str, handler: Callable[..., Any], **options: Any) -> Function:
        positional = [
            p for p in inspect.signature(handler).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
        return cls(name=name, handler=handler, is_async=inspect.iscoroutinefunction(handler),
                   takes_payload=len(positional) >= 1, wants_context=len(positional) >= 2, **options)


# A worker's concurrency when neither --concurrency nor JOBLINE_CONCURRENCY sets it. A coroutine
# waiting on I/O costs little, and claims of half the slots then fill them in few round trips
# (bench/defaults.py: about 14,000 no-op jobs/s at 100 against 3,700 at 10); a sync handler
# holds one of the worker's threads for as long as it runs, so fewer.
ASYNC_CONCURRENCY = 100
SYNC_CONCURRENCY = 20


class Registry:
    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}

    def add(self, function: Function) -> None:
        if function.name in self._functions:
            raise InvalidInput(f"a function named {function.name!r} is already registered")
        self._functions[function.name] = function

    def get(self, name: str) -> Function:
        try:
            return self._functions[name]
        except KeyError:
            known = ", ".join(sorted(self._functions)) or "none"
            raise FunctionNotFound(f"no function named {name!r} is registered here; registered: {known}") from None

    def find(self, name: str) -> Function | None:
        return self._functions.get(name)

    def default_concurrency(self) -> int:
        """Jobs a worker of these functions runs at once unless told: ASYNC_CONCURRENCY when every
        handler is a coroutine function (the built-ins are), else SYNC_CONCURRENCY."""
        return ASYNC_CONCURRENCY if all(function.is_async for function in self) else SYNC_CONCURRENCY

    def names(self) -> list[str]:
        return sorted(self._functions)

    def __iter__(self):
        return iter(self._functions.values())
