"""Client: claim tasks, report on them and enqueue jobs over jobline's HTTP API, falling back
to the database when the endpoint is unreachable (seed 004).

Unreachable means a connection error, a timeout or a 5xx answer. A 4xx answer is the server's
verdict: it is raised as the matching jobline error and never retried in the database. A 429 is
raised as ``RateLimited`` (an ``Unavailable``) carrying the server's ``Retry-After``: try the same
operation again after that delay (``RemoteWorker`` does).

The fallback runs the same operation through the operations layer (the code behind the HTTP
routes), as the caller the token stands for. That caller is found here, with ``Operations.authenticate``
and this process's settings: the service key and JWTs are verified against
``JOBLINE_SERVICE_KEY`` / ``JOBLINE_JWT_SECRET`` (which must then be set here as on the server),
API tokens are looked up in the database. A token that cannot be verified here is refused.
While the endpoint is unreachable, the client tries it again at most every
``retry_endpoint_after`` seconds and goes straight to the database in between; each outage is
logged once (WARNING ``client.fallback``, then INFO ``client.recovered``) and every operation run
in the database is counted in ``Client.fallbacks``.

A task claimed through either path can be reported through either: both lease it the same way.

Claims return a ``ClaimedTask``: a ``Task`` plus ``lease_seconds``, how long its lease runs from
when the answer arrived, measured in the server's own clock (``lease_until`` minus the answer's
``Date`` header, less ``DATE_SLACK_SECONDS``), so that a local clock that is off cannot stretch
heartbeats past the lease. In the fallback it is this process's ``JOBLINE_REMOTE_LEASE_SECONDS``.

Enqueue options a caller leaves out are filled differently on the two paths. Over HTTP the server
applies the function's registration in the App it serves (``queue``, ``priority``,
``max_attempts``), then the defaults; the fallback has no App registry (the Client never imports
one) and applies only the defaults. Pass those options explicitly to get the same job either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email.utils
import inspect
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import errors
from .._sync import SyncBridge
from ..auth import Principal
from ..errors import (AuthError, Conflict, Forbidden, InvalidInput, JobNotFound, JoblineError, LeaseLost, NotFound,
                      RateLimited, Unauthenticated, Unavailable)
from ..job import encode_result, new_job
from ..operations import Operations
from ..operations.policy import public_job
from ..operations.tasks import Task, check_claim_limit, check_task_types
from ..settings import Settings

if TYPE_CHECKING:
    import httpx  # imported where a request is made: `import jobline` does not load httpx (issue 12)

log = logging.getLogger(__name__)

T = TypeVar("T")

CLAIM_PATH = "/functions/v1/claim-next-task"
ENQUEUE_OPTIONS = frozenset(inspect.signature(new_job).parameters) - {"function", "payload"}
# How long the fallback trusts a token it verified: a revoked API token stops working in the
# database path within this time, as it does at once on the server.
PRINCIPAL_TTL_SECONDS = 60.0

# The Date header has a resolution of one second and servers refresh it about once a second
# (uvicorn does), so it may be up to this much behind the server's clock: a lease measured
# against it is shortened by as much, to err on the side of an early heartbeat.
DATE_SLACK_SECONDS = 2.0
# The longest Retry-After taken at its word: a worker waits that long holding the task's slot.
MAX_RETRY_AFTER_SECONDS = 3600.0

# A 4xx status's error class; the server's error code may name a more precise one of the same family.
_STATUS_ERRORS: dict[int, type[JoblineError]] = {401: Unauthenticated, 403: Forbidden, 404: JobNotFound,
                                                  409: LeaseLost}
_FAMILIES: dict[int, type[JoblineError]] = {401: AuthError, 403: AuthError, 404: NotFound, 409: Conflict}


def _error_classes() -> dict[str, type[JoblineError]]:
    found: dict[str, type[JoblineError]] = {}
    pending: list[type[JoblineError]] = [JoblineError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


_BY_CODE = _error_classes()


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedTask(Task):
    """A Task as a Client claimed it, with ``lease_seconds``: how long its lease runs from when
    the claim's answer arrived, in the server's clock (None when the server sent no ``Date``).
    Heartbeat well within it: a comparison of ``lease_until`` with the local clock is off by as
    much as the two clocks differ.

    >>> task = client.claim_next_task(["render"])  # doctest: +SKIP
    >>> task.lease_seconds                          # doctest: +SKIP
    298.0
    """

    lease_seconds: float | None = None


class Client:
    """A remote worker's way to jobline: over HTTP, with the database as a fallback.

    >>> with Client("https://jobs.example.com", token=os.environ["JOBLINE_TOKEN"]) as client:  # doctest: +SKIP
    ...     task = client.claim_next_task(["render"])
    ...     if task is not None:
    ...         client.complete(task, {"frames": render(task.params)})

    ``database_url`` enables the fallback; ``timeout`` (seconds) bounds each request;
    ``settings`` (default: read from ``JOBLINE_*`` variables) verify the token in the fallback and
    give its lease length (``JOBLINE_REMOTE_LEASE_SECONDS``); ``pool_size`` bounds the fallback's
    database connections. Every operation has a sync form and an ``_async`` twin; use one kind
    per Client (the sync forms run on a background event loop of their own).
    """

    def __init__(self, url: str, token: str, database_url: str | None = None, *, timeout: float = 10.0,
                 settings: Settings | None = None, retry_endpoint_after: float = 5.0, pool_size: int = 4):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidInput(f"url must be the http:// or https:// address of a jobline server, got {url!r}")
        if not isinstance(token, str) or not token.strip():
            raise InvalidInput("token must be a service key, a user JWT or an API token (`jobline tokens create`)")
        for name, value in (("timeout", timeout), ("retry_endpoint_after", retry_endpoint_after)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise InvalidInput(f"{name} must be a number of seconds between 0 and 3600, got {value!r}")
        self.url = url.rstrip("/")
        self.token = token.strip()
        self.timeout = float(timeout)
        self.retry_endpoint_after = float(retry_endpoint_after)
        self.pool_size = pool_size
        self.database_url = database_url
        # Read now, so a bad JOBLINE_* variable shows at once rather than in the middle of an outage.
        self.settings: Settings | None = None
        if database_url:
            base = settings if settings is not None else Settings.from_env(database_url=database_url)
            self.settings = dataclasses.replace(base, database_url=database_url)
        self.fallbacks = 0              # operations run in the database instead of over HTTP
        self.outage: str | None = None  # why the endpoint is unreachable, while it is
        self._retry_at = 0.0            # monotonic time before which an outage skips the endpoint
        self._bridge = SyncBridge()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: httpx.AsyncClient | None = None
        self._ops: Operations | None = None
        self._principal: tuple[Principal, float] | None = None
        self._db_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Client({self.url!r}, fallback={'database' if self.settings else 'none'})"

    # -- operations (the async form holds the implementation) -----------------------------------

    async def claim_next_task_async(self, task_types: Sequence[str] | None = None) -> ClaimedTask | None:
        """Claim the next task (of ``task_types``, or of any remote task type), or None."""
        types = None if task_types is None else check_task_types(list(task_types))

        async def in_database(ops: Operations, who: Principal) -> ClaimedTask | None:
            task = await ops.tasks.claim(who, types)
            # The lease is exactly this long, in the database's clock, from the claim.
            return None if task is None else _claimed(task, float(ops.tasks.lease_seconds))

        return await self._run("claim", CLAIM_PATH, {} if types is None else {"task_types": types}, _task,
                               in_database)

    def claim_next_task(self, task_types: Sequence[str] | None = None) -> ClaimedTask | None:
        return self._bridge.run(self.claim_next_task_async(task_types), "claim_next_task")

    async def claim_next_tasks_async(self, limit: int, task_types: Sequence[str] | None = None) -> list[ClaimedTask]:
        """Claim up to ``limit`` (1 to 100) tasks in one request, in claim order; [] when none is
        claimable. Each is reported on by itself, as a task from :meth:`claim_next_task` is.

        >>> for task in client.claim_next_tasks(10, ["render"]):  # doctest: +SKIP
        ...     client.complete(task, render(task.params))
        """
        types = None if task_types is None else check_task_types(list(task_types))
        limit = check_claim_limit(limit)

        async def in_database(ops: Operations, who: Principal) -> list[ClaimedTask]:
            lease = float(ops.tasks.lease_seconds)
            return [_claimed(task, lease) for task in await ops.tasks.claim_many(who, types, limit)]

        body: dict[str, Any] = {"limit": limit} if types is None else {"limit": limit, "task_types": types}
        return await self._run("claim", CLAIM_PATH, body, _tasks, in_database)

    def claim_next_tasks(self, limit: int, task_types: Sequence[str] | None = None) -> list[ClaimedTask]:
        return self._bridge.run(self.claim_next_tasks_async(limit, task_types), "claim_next_tasks")

    async def complete_async(self, task: Task, result: Any = None) -> str:
        """Record the task's success with ``result`` (JSON, at most 1 MiB); returns its status."""
        task_id, lease = _held(task)
        encode_result(result)  # InvalidInput here, the same on both paths
        return await self._run("complete", f"/api/tasks/{task_id}/complete", {"lease_token": lease, "result": result},
                               _field("status"), lambda ops, who: ops.tasks.complete(who, task_id, lease, result))

    def complete(self, task: Task, result: Any = None) -> str:
        return self._bridge.run(self.complete_async(task, result), "complete")

    async def complete_many_async(self, done: Sequence[tuple[Task, Any]]) -> list[str]:
        """Record the success of up to 100 tasks, given as (task, result), in one request; returns
        each one's outcome in order: ``succeeded``, ``lease_lost`` or ``not_found`` (a report that
        changed nothing, which :meth:`complete` would raise as LeaseLost / JobNotFound).

        >>> tasks = client.claim_next_tasks(10, ["render"])                         # doctest: +SKIP
        >>> client.complete_many([(t, render(t.params)) for t in tasks])            # doctest: +SKIP
        ['succeeded', 'succeeded', ...]
        """
        reports = []
        for task, result in done:
            task_id, lease = _held(task)
            encode_result(result)  # InvalidInput here, the same on both paths
            reports.append((task_id, lease, result))

        async def in_database(ops: Operations, who: Principal) -> list[str]:
            return [status for _, status in await ops.tasks.complete_many(who, reports)]

        body = {"reports": [{"task_id": i, "lease_token": lease, "result": result} for i, lease, result in reports]}
        return await self._run("complete", "/api/tasks/complete", body,
                               lambda r: [item["status"] for item in _field("reports")(r)], in_database)

    def complete_many(self, done: Sequence[tuple[Task, Any]]) -> list[str]:
        return self._bridge.run(self.complete_many_async(done), "complete_many")

    async def fail_async(self, task: Task, error: str, *, retryable: bool = True, retry_in: float | None = None) -> str:
        """Record a failed attempt: retried (after ``retry_in`` seconds, or the default backoff)
        while attempts remain and ``retryable``, else final. Returns the task's new status."""
        task_id, lease = _held(task)
        body = {"lease_token": lease, "error": error, "retryable": bool(retryable), "retry_in": retry_in}
        return await self._run("fail", f"/api/tasks/{task_id}/fail", body, _field("status"),
                               lambda ops, who: ops.tasks.fail(who, task_id, lease, error, retryable=retryable,
                                                             retry_in=retry_in))

    def fail(self, task: Task, error: str, *, retryable: bool = True, retry_in: float | None = None) -> str:
        return self._bridge.run(self.fail_async(task, error, retryable=retryable, retry_in=retry_in), "fail")

    async def snooze_async(self, task: Task, seconds: float) -> str:
        """Put the task back for ``seconds`` without spending an attempt (what a handler's
        Snooze does); returns its new status, ``pending``."""
        task_id, lease = _held(task)
        return await self._run("snooze", f"/api/tasks/{task_id}/snooze", {"lease_token": lease, "seconds": seconds},
                               _field("status"), lambda ops, who: ops.tasks.snooze(who, task_id, lease, seconds))

    def snooze(self, task: Task, seconds: float) -> str:
        return self._bridge.run(self.snooze_async(task, seconds), "snooze")

    async def heartbeat_async(self, task: Task) -> dt.datetime:
        """Extend the task's lease; returns its new end. LeaseLost if the task was rescued."""
        task_id, lease = _held(task)
        return await self._run("heartbeat", f"/api/tasks/{task_id}/heartbeat", {"lease_token": lease},
                               lambda r: _time(_field("lease_until")(r)),
                               lambda ops, who: ops.tasks.heartbeat(who, task_id, lease))

    def heartbeat(self, task: Task) -> dt.datetime:
        return self._bridge.run(self.heartbeat_async(task), "heartbeat")

    async def enqueue_async(self, function: str, payload: Mapping[str, Any] | None = None, **options: Any) -> dict:
        """Enqueue a job; returns it as the HTTP API shows jobs (``id``, ``status``, ...).
        Options: run_at (datetime) or delay (seconds), queue, priority, owner, max_attempts,
        depends_on, unique_key, concurrency_key. A user token enqueues jobs it owns. After a timeout the fallback
        may enqueue a job the server had already taken: give a ``unique_key`` to make that harmless.

        Options left out: over HTTP the server fills queue, priority and max_attempts from the
        function's registration in the App it serves; the database fallback has no App and uses
        the plain defaults (queue ``default``, priority 0, 3 attempts). Give them explicitly when
        the job must be the same on both paths.

        >>> client.enqueue("render", {"scene": 8}, queue="gpu", priority=5, max_attempts=3)  # doctest: +SKIP
        {'id': 42, 'function': 'render', 'queue': 'gpu', 'status': 'pending', ...}
        """
        unknown = set(options) - ENQUEUE_OPTIONS
        if unknown:
            raise InvalidInput(f"unknown enqueue option(s): {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(sorted(ENQUEUE_OPTIONS))}")
        options = {k: v for k, v in options.items() if v is not None}
        new_job(function, payload, **options)  # InvalidInput here, the same on both paths
        body: dict[str, Any] = {"function": function, **{k: _jsonable(v) for k, v in options.items()}}
        if isinstance(body.get("depends_on"), int):
            body["depends_on"] = [body["depends_on"]]
        if payload is not None:
            body["payload"] = payload

        async def in_database(ops: Operations, who: Principal) -> dict:
            return public_job(await ops.jobs.enqueue(who, function, payload, **options))  # POST /api/jobs's rules

        return await self._run("enqueue", "/api/jobs", body, _json, in_database)

    def enqueue(self, function: str, payload: Mapping[str, Any] | None = None, **options: Any) -> dict:
        return self._bridge.run(self.enqueue_async(function, payload, **options), "enqueue")

    # -- lifetime -----------------------------------------------------------------------------

    async def close_async(self) -> None:
        """Close the HTTP connections and the fallback's database pool (the Client may be used again)."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and not self._loop.is_closed():
            raise JoblineError(_OTHER_LOOP)
        mine = self._loop is loop
        http, ops = self._http, self._ops
        self._loop = self._http = self._ops = self._db_lock = None
        self._principal = None
        if mine and http is not None:
            await http.aclose()
        if mine and ops is not None:
            await ops.close()

    async def aclose(self) -> None:
        """Same as :meth:`close_async` (httpx's name for it)."""
        await self.close_async()

    def close(self) -> None:
        if self._loop is not None:
            self._bridge.run(self.close_async(), "close")
        self._bridge.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close_async()

    # -- one operation: the endpoint, else the database ------------------------------------------

    async def _run(self, operation: str, path: str, body: dict, answer: Callable[[httpx.Response], T],
                   in_database: Callable[[Operations, Principal], Awaitable[T]]) -> T:
        http = self._bind()
        import httpx  # loaded by _bind already

        if self.outage is not None and self.settings is not None and time.monotonic() < self._retry_at:
            return await self._fallback(operation, self.outage, in_database)
        try:
            response = await http.post(path, json=body)
        except httpx.TransportError as exc:  # connection refused or reset, DNS, timeouts
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        except httpx.HTTPError as exc:  # an answer that is not HTTP as httpx knows it: not an outage
            raise JoblineError(f"{self.url}{path}: {type(exc).__name__}: {exc}") from exc
        else:
            if response.status_code < 500:
                if self.outage is not None:
                    log.info("client.recovered", extra={"url": self.url, "fallbacks": self.fallbacks})
                    self.outage = None
                if not 200 <= response.status_code < 300:
                    raise _error(response, f"{self.url}{path}")
                return answer(response)
            reason = f"HTTP {response.status_code}"
        if self.settings is None:
            raise Unavailable(f"{self.url}{path} did not answer ({reason}) and this Client has no database_url "
                              "to fall back on")
        self._retry_at = time.monotonic() + self.retry_endpoint_after
        return await self._fallback(operation, reason, in_database)

    async def _fallback(self, operation: str, reason: str,
                        in_database: Callable[[Operations, Principal], Awaitable[T]]) -> T:
        if self.outage is None:
            self.outage = reason
            log.warning("client.fallback", extra={"url": self.url, "operation": operation, "reason": reason,
                                                  "retry_endpoint_s": self.retry_endpoint_after})
        ops, principal = await self._database(reason)
        self.fallbacks += 1
        return await in_database(ops, principal)

    async def _database(self, reason: str) -> tuple[Operations, Principal]:
        """The fallback's operations (opening its pool on first use) and the caller the token
        stands for."""
        async with self._db_lock:
            if self._ops is None:
                self._ops = await Operations.connect(self.settings, pool_size=self.pool_size)
            now = time.monotonic()
            if self._principal is None or now >= self._principal[1]:
                try:
                    principal = await self._ops.authenticate(self.token)
                except Unauthenticated as exc:
                    raise Unauthenticated(
                        f"{self.url} is unreachable ({reason}) and the database fallback cannot verify this token: "
                        "it is not JOBLINE_SERVICE_KEY, a JWT signed with JOBLINE_JWT_SECRET as set in this "
                        "process's environment, nor a live API token. Set the same JOBLINE_SERVICE_KEY / "
                        "JOBLINE_JWT_SECRET as the server, or use an API token") from exc
                self._principal = (principal, now + PRINCIPAL_TTL_SECONDS)
            return self._ops, self._principal[0]

    def _bind(self) -> httpx.AsyncClient:
        """The HTTP client of the running loop, created on first use (it cannot move between loops)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise JoblineError(_OTHER_LOOP)
            # The loop that had our resources has ended: they went with it.
            self._loop, self._ops, self._principal = loop, None, None
            import httpx  # about 9 MB with httpcore, anyio, h11 and click: only a Client that is used pays it

            self._http = httpx.AsyncClient(base_url=self.url, timeout=self.timeout,
                                           headers={"Authorization": f"Bearer {self.token}"})
            self._db_lock = asyncio.Lock()
        return self._http


_OTHER_LOOP = ("this Client is in use on another event loop (its sync methods run on a loop of their own): "
               "use either its sync or its async methods, or one Client per event loop")


def _held(task: Task) -> tuple[int, str]:
    try:
        return task.task_id, task.lease_token
    except AttributeError:
        raise InvalidInput(f"expected a Task from claim_next_task, got {type(task).__name__}") from None


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise JoblineError(f"{response.request.url} answered {response.status_code} with a body that is not "
                           "JSON: is this URL a jobline server?") from None


def _field(name: str) -> Callable[[httpx.Response], Any]:
    def read(response: httpx.Response) -> Any:
        data = _json(response)
        if not isinstance(data, dict) or name not in data:
            raise JoblineError(f"{response.request.url} answered without {name!r}: is this URL a jobline server?")
        return data[name]

    return read


def _time(value: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise JoblineError(f"the server sent a time that is not ISO 8601: {value!r}") from None


def _task(response: httpx.Response) -> ClaimedTask | None:
    if response.status_code == 204:
        return None
    return _read_task(_json(response), response)


def _tasks(response: httpx.Response) -> list[ClaimedTask]:
    data = _json(response)
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise JoblineError(f"{response.request.url} answered a batch claim without a list of 'tasks': is this URL a "
                           "jobline server of the same version?")
    return [_read_task(item, response) for item in data["tasks"]]


def _read_task(data: Any, response: httpx.Response) -> ClaimedTask:
    try:
        lease_until = _time(data["lease_until"])
        task = ClaimedTask(task_id=int(data["task_id"]), task_type=data["task_type"], params=data["params"],
                           project_id=data["project_id"], attempt=int(data["attempt"]),
                           max_attempts=int(data["max_attempts"]), lease_token=data["lease_token"],
                           lease_until=lease_until, upstream=data.get("upstream"))
    except (KeyError, TypeError, ValueError) as exc:
        raise JoblineError(f"{response.request.url} answered with a task missing {exc}: is this URL a jobline "
                           "server of the same version?") from None
    sent = _server_date(response)
    if sent is None or lease_until.tzinfo is None:
        return task
    # Both times are the server's, so the local clock's offset cancels out.
    lease = (lease_until - sent).total_seconds() - DATE_SLACK_SECONDS
    return dataclasses.replace(task, lease_seconds=max(lease, 0.0))


def _claimed(task: Task, lease_seconds: float) -> ClaimedTask:
    return ClaimedTask(**{f.name: getattr(task, f.name) for f in dataclasses.fields(Task)},
                       lease_seconds=lease_seconds)


def _server_date(response: httpx.Response) -> dt.datetime | None:
    """The time the server sent ``response`` (its Date header), or None when it has none."""
    try:
        sent = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return sent if sent.tzinfo is not None else sent.replace(tzinfo=dt.timezone.utc)


def _retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (it is a number of seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        when = when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
        # Against the server's own Date when it sent one, so the local clock does not matter.
        seconds = (when - (_server_date(response) or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _error(response: httpx.Response, where: str) -> JoblineError:
    """The jobline error a non-2xx, non-5xx answer stands for, with the server's message."""
    status = response.status_code
    code = message = None
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            code, message = error.get("code"), error.get("message")
    except (ValueError, AttributeError):
        pass
    if status < 400:
        return JoblineError(f"{where} answered {status} {response.headers.get('location', '')}".rstrip()
                            + ": check the URL (redirects are not followed)")
    message = message if isinstance(message, str) and message else f"{where} answered {status}"
    if status == 429:
        return RateLimited(message, _retry_after(response))
    cls = _STATUS_ERRORS.get(status, InvalidInput)
    family = _FAMILIES.get(status, InvalidInput)
    named = _BY_CODE.get(code) if isinstance(code, str) else None
    if named is not None and issubclass(named, family):
        cls = named  # e.g. 404 function_not_found, 409 conflict, 422 destination_blocked
    return cls(message)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return value
