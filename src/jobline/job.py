"""Jobs as Python sees them: the row type, the states, and validation of what users enqueue.

Validation here is pure (no I/O) and mirrors the CHECK constraints of migration 0001, so a
bad value gets a clear message before it reaches PostgreSQL; the constraints stay as the
second wall for SQL callers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import InvalidInput

MAX_ID = 2**63 - 1  # a bigint id
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_ERROR_CHARS = 64 * 1024       # an attempt's error message (and its traceback), each
MAX_NAME_LENGTH = 200
MAX_QUEUE_LENGTH = 100
PRIORITY_RANGE = (-1000, 1000)
MAX_ATTEMPTS_RANGE = (1, 1000)
MAX_DELAY_SECONDS = 10 * 366 * 86400
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A NUL in a JSON string, as json.dumps writes it: \u0000 after an even number of backslashes.
# PostgreSQL's jsonb cannot store it.
JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class JobStatus(str, enum.Enum):
    WAITING = "waiting"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Functions every App registers (app.py). Jobs of theirs belong to no App in particular, and
# only the service may enqueue them over the API.
BUILTIN_FUNCTIONS = frozenset({"sql", "http", "pipeline"})
# The built-ins only the service may make work for: `sql` runs any SQL, `http` sends anywhere with
# the operator's secrets. `pipeline` (start a run, functions/pipeline.py) is anyone's: its run is
# the job's owner's, as a run started over the API is the caller's.
SERVICE_ONLY_FUNCTIONS = frozenset({"sql", "http"})

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
LIVE_STATUSES = frozenset({"waiting", "pending", "running"})


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    id: int
    function: str
    payload: dict
    status: str
    queue: str
    priority: int
    owner: str | None
    run_at: dt.datetime
    attempts: int
    max_attempts: int
    depends_on: list[int] | None
    unique_key: str | None
    worker_id: str | None
    lease_until: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    result: Any
    last_error: str | None
    archived_at: dt.datetime | None
    created_at: dt.datetime
    concurrency_key: str | None = None  # flow control: limits per key (0019)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(**{f: row[f] for f in _JOB_FIELDS if f in row})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the field names the CLI's --json and the HTTP API use."""
        return {f: jsonable(getattr(self, f)) for f in _JOB_FIELDS}


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    job_id: int
    attempt: int
    worker_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    outcome: str
    error: str | None
    traceback: str | None = None  # for operators: it names the server's files

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}
        d["duration_ms"] = round(self.duration_ms, 3)
        return d


def jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


@dataclasses.dataclass(slots=True)  # not frozen: a frozen __init__ is several times slower
class NewJob:
    """A validated request to enqueue one job (see :func:`new_job`)."""

    function: str
    payload: Mapping[str, Any]
    payload_json: str
    run_at: dt.datetime | None
    queue: str
    priority: int
    owner: str | None
    max_attempts: int
    depends_on: tuple[int, ...]
    unique_key: str | None
    concurrency_key: str | None = None

    @property
    def is_simple(self) -> bool:
        """True when a plain INSERT can store it (no dependency or deduplication logic)."""
        return not self.depends_on and self.unique_key is None

    def with_payload(self, payload: Mapping[str, Any] | None) -> NewJob:
        """The same request with another payload (bulk enqueue validates shared options once)."""
        return NewJob(self.function, {} if payload is None else payload, encode_payload(payload), self.run_at,
                      self.queue, self.priority, self.owner, self.max_attempts, self.depends_on, self.unique_key,
                      self.concurrency_key)

    def stored(self, id: int, run_at: dt.datetime, created_at: dt.datetime) -> Job:
        """The Job row a plain INSERT of this request created (saves returning every column)."""
        return Job(id=id, function=self.function, payload=dict(self.payload), status="pending", queue=self.queue,
                   priority=self.priority, owner=self.owner, run_at=run_at, attempts=0,
                   max_attempts=self.max_attempts, depends_on=None, unique_key=None, worker_id=None,
                   lease_until=None, started_at=None, finished_at=None, result=None, last_error=None,
                   archived_at=None, created_at=created_at, concurrency_key=self.concurrency_key)


@dataclasses.dataclass(slots=True)
class Batch:
    """A validated bulk enqueue: plain jobs grouped by everything but their payload (each group
    is one INSERT), and jobs with dependencies or unique keys, enqueued one by one. Positions
    say where each job stands in the caller's list, so ids come back in the caller's order."""

    groups: dict[tuple, tuple[NewJob, list[str], list[int]]] = dataclasses.field(default_factory=dict)
    singles: list[tuple[int, NewJob]] = dataclasses.field(default_factory=list)
    size: int = 0


def check_name(value: Any, what: str, max_length: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= max_length:
        raise InvalidInput(f"{what} must be 1 to {max_length} characters long, got {len(value)}")
    if _CONTROL.search(value):
        raise InvalidInput(f"{what} {value!r} contains a control character")
    if value != value.strip():
        raise InvalidInput(f"{what} {value!r} has leading or trailing spaces")
    return value


def check_int(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(f"{what} must be between {low} and {high}, got {value}")
    return value


_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def encode_payload(payload: Any) -> str:
    """The payload as compact JSON text, refusing what is not a JSON object or is too large."""
    if payload is None:
        payload = {}
    if not isinstance(payload, Mapping):
        raise InvalidInput(f"payload must be a JSON object (a dict), got {type(payload).__name__}")
    if not payload:
        return "{}"
    try:
        text = _encode_json(payload)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"payload is not JSON-serialisable: {exc}") from exc
    if "\\u0000" in text and JSON_NUL.search(text):
        raise InvalidInput("payload contains a NUL character (\\u0000), which PostgreSQL cannot store")
    if len(text) * 4 > MAX_PAYLOAD_BYTES:  # cheap test first: a character is at most 4 bytes
        size = len(text.encode())
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidInput(f"payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes (1 MiB)")
    return text


def encode_result(value: Any) -> str | None:
    """A handler's or remote worker's result as JSON text (any JSON value, at most 1 MiB)."""
    if value is None:
        return None
    try:
        text = _encode_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"result is not JSON-serialisable: {exc}") from None
    if len(text) * 4 > MAX_PAYLOAD_BYTES and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(f"result is larger than the {MAX_PAYLOAD_BYTES} bytes limit")
    if "\\u0000" in text and JSON_NUL.search(text):
        raise InvalidInput("result contains a NUL character (\\u0000), which PostgreSQL cannot store")
    return text


def parse_payload(text: str) -> dict:
    """Parse a JSON payload given as text (CLI, HTTP), with a message that points at the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"payload must be a JSON object like {{\"key\": 1}}, got {type(value).__name__}")
    return value


def new_job(
    function: str,
    payload: Mapping[str, Any] | None = None,
    *,
    run_at: dt.datetime | None = None,
    delay: float | None = None,
    queue: str = "default",
    priority: int = 0,
    owner: str | None = None,
    max_attempts: int = 3,
    depends_on: int | Iterable[int] | None = None,
    unique_key: str | None = None,
    concurrency_key: str | None = None,
) -> NewJob:
    """Validate one enqueue request; raises InvalidInput naming the bad field."""
    if run_at is not None and delay is not None:
        raise InvalidInput("give either run_at or delay, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_DELAY_SECONDS:
            raise InvalidInput(f"delay must be a number of seconds between 0 and {MAX_DELAY_SECONDS}, got {delay!r}")
        run_at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=delay)
    elif run_at is not None:
        if not isinstance(run_at, dt.datetime):
            raise InvalidInput(f"run_at must be a datetime, got {type(run_at).__name__}")
        if run_at.tzinfo is None:
            run_at = run_at.replace(tzinfo=dt.timezone.utc)
        try:  # a time whose UTC instant falls outside years 1 to 9999 could be stored but never read back
            run_at = run_at.astimezone(dt.timezone.utc)
        except OverflowError:
            raise InvalidInput(f"run_at {run_at.isoformat()} is outside the years 1 to 9999 (UTC)") from None
    if depends_on is None:
        deps: tuple[int, ...] = ()
    elif isinstance(depends_on, int) and not isinstance(depends_on, bool):
        deps = (depends_on,)
    else:
        deps = tuple(depends_on)
    for dep in deps:
        check_int(dep, "depends_on id", 1, MAX_ID)
    return NewJob(
        function=check_name(function, "function name"),
        payload={} if payload is None else payload,
        payload_json=encode_payload(payload),
        run_at=run_at,
        queue=check_name(queue, "queue", MAX_QUEUE_LENGTH),
        priority=check_int(priority, "priority", *PRIORITY_RANGE),
        owner=None if owner is None else check_name(owner, "owner"),
        max_attempts=check_int(max_attempts, "max_attempts", *MAX_ATTEMPTS_RANGE),
        depends_on=tuple(dict.fromkeys(deps)),
        unique_key=None if unique_key is None else check_unique_key(unique_key),
        concurrency_key=None if concurrency_key is None else check_name(concurrency_key, "concurrency_key"),
    )


# Unique keys of jobline's own jobs (a notification's delivery, migration 0020) start so; a caller's
# key may not, or it could keep jobline from queueing one (the database refuses it to plain roles).
RESERVED_KEY_PREFIX = "jobline-"


def check_unique_key(key: Any) -> str:
    key = check_name(key, "unique_key")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise InvalidInput(f"unique_key {key!r} starts with {RESERVED_KEY_PREFIX!r}, which jobline keeps for its own "
                           "jobs (notification deliveries); choose another")
    return key


def parse_run_at(text: str, what: str = "run_at") -> dt.datetime:
    """An ISO 8601 instant from the CLI or HTTP (``what`` names it in the error); naive times are
    taken as UTC."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise InvalidInput(f"{what} {text!r} is not an ISO 8601 date-time such as 2026-01-31T03:00:00Z") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def check_ids(ids: Sequence[Any], what: str = "job id") -> list[int]:
    return [check_int(i, what, 1, MAX_ID) for i in ids]
