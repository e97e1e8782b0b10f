"""App: the functions a codebase defines, and the way to enqueue work and run workers.

Each public operation comes in a pair: ``name()`` is sync, ``name_async()`` is async; the sync
form runs the async one on a background loop (``_sync.py``), so the logic exists once. App acts
as the service (the operator's own code) through the operations layer (``app.ops``), as the
CLI and the HTTP API do for their callers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from . import vault
from ._sync import SyncBridge
from .auth import SERVICE
from .db import connect
from .db import store as store_module
from .db.store import Store
from .errors import InvalidInput, JoblineError, PipelineNotFound
from .functions import http as http_function
from .functions import pipeline as pipeline_function
from .functions import sql as sql_function
from .job import BUILTIN_FUNCTIONS, Job
from .limit import LimitSpec, limit_spec
from .operations import Operations
from .operations.jobs import plan_batch, plan_job
from .operations.pipelines import start_params
from .operations.schedules import schedule_spec
from .operations.secrets import Rotation
from .retry import Backoff
from .pipeline import PipelineSpec, Step, pipeline_spec
from .schedule import Schedule, ScheduleSpec
from .runtime.connections import ConnectionLimit
from .runtime.context import JobContext
from .runtime.executor import call_handler
from .runtime.maintenance import Maintenance
from .runtime.registry import Function, Registry
from .runtime.worker import Summary, Worker
from .settings import Settings


class App:
    """A registry of functions plus a connection to a jobline database.

    >>> app = App()
    >>> @app.function("streak-updater", max_attempts=5, timeout=30)
    ... def update_streaks(payload):
    ...     return {"updated": 0}
    >>> job = app.enqueue("streak-updater", {"day": "2026-01-31"})   # doctest: +SKIP
    """

    def __init__(self, database_url: str | None = None, *, settings: Settings | None = None):
        self.settings = settings or Settings.from_env(database_url=database_url)
        self.registry = Registry()
        self._store: Store | None = None
        self._ops: Operations | None = None
        self._bridge = SyncBridge()
        self.schedules: dict[str, ScheduleSpec] = {}  # declared in code, by name
        self.limits: dict[tuple[str, str, bool], LimitSpec] = {}  # flow control declared in code
        self.pipelines: dict[str, PipelineSpec] = {}  # declared in code, by name
        self.registry.add(Function.from_handler(sql_function.NAME, sql_function.run_sql))
        self.registry.add(Function.from_handler(pipeline_function.NAME, pipeline_function.start_run))
        # One shared HTTP client, closed in close_async; it reads self.settings when used, since
        # the CLI replaces them after loading the user's App.
        self._http = http_function.HttpCaller(lambda: self.settings)
        self.registry.add(Function.from_handler(http_function.NAME, self._http.run,
                                                max_attempts=http_function.MAX_ATTEMPTS))

    # -- defining functions ---------------------------------------------------------------

    def function(self, name: str, *, max_attempts: int = 3, timeout: float | None = None,
                 queue: str = "default", priority: int = 0, backoff: Backoff | None = None,
                 backoff_base: float | None = None, backoff_factor: float | None = None,
                 backoff_max: float | None = None, backoff_jitter: float | None = None,
                 verify_jwt: bool = True, concurrency: int | None = None,
                 rate_limit: tuple[int, float] | str | None = None, limit_per_key: bool = False) -> Callable:
        """Register a sync or async handler ``f(payload)`` or ``f(payload, ctx)`` under ``name``.

        ``timeout`` is in seconds. Backoff before retry n is ``base * factor ** (n - 1)`` seconds,
        capped at ``backoff_max``, with ``±backoff_jitter`` random spread. ``verify_jwt=False``
        lets `jobline serve` invoke it at ``/functions/v1/<name>`` without a credential (webhooks).
        Flow control across all workers: at most ``concurrency`` of its jobs running at once and
        at most ``rate_limit`` = (count, seconds) starts in any such window; with
        ``limit_per_key``, for each ``concurrency_key`` separately (see :meth:`limit`).

        >>> @app.function("post", concurrency=1, rate_limit=(30, 60), limit_per_key=True)
        ... async def post(payload): ...
        """
        backoff = _backoff(backoff, backoff_base, backoff_factor, backoff_max, backoff_jitter)
        if concurrency is not None or rate_limit is not None:
            self.limit(function=name, concurrency=concurrency, rate=rate_limit, per_key=limit_per_key)
        elif limit_per_key:
            raise InvalidInput(f"limit_per_key on function {name!r} needs a concurrency or a rate_limit")

        def register(handler: Callable) -> Callable:
            self.registry.add(Function.from_handler(name, handler, max_attempts=max_attempts, timeout=timeout,
                                                    queue=queue, priority=priority, backoff=backoff,
                                                    verify_jwt=verify_jwt))
            return handler

        return register

    def http_function(self, name: str, *, url: str, method: str = "POST", headers: Mapping[str, str] | None = None,
                      timeout: float = 30.0, max_attempts: int = 3, queue: str = "default", priority: int = 0,
                      backoff: Backoff | None = None, backoff_base: float | None = None,
                      backoff_factor: float | None = None, backoff_max: float | None = None,
                      backoff_jitter: float | None = None) -> None:
        """Register ``name`` as a call to ``url``: each job's payload is sent as the JSON body
        (as query parameters for GET and HEAD), with the same retries, idempotency key, egress
        policy and result as the built-in ``http`` function. ``url`` and ``headers`` may hold
        ``{{secret:NAME}}``; ``timeout`` is in seconds, for the whole call.

        >>> app.http_function("adapter-health", url="https://example.supabase.co/functions/v1/adapter-health",
        ...                   headers={"Authorization": "Bearer {{secret:service_role_key}}"})  # doctest: +SKIP
        >>> app.enqueue("adapter-health", {"adapter": "all"})  # doctest: +SKIP
        """
        handler = self._http.function(url=url, method=method, headers=headers, timeout=timeout)
        self.registry.add(Function.from_handler(
            name, handler, max_attempts=max_attempts, queue=queue, priority=priority,
            backoff=_backoff(backoff, backoff_base, backoff_factor, backoff_max, backoff_jitter)))

    # -- flow control declared in code (reconciled with the database when a worker starts) ---

    def limit(self, *, function: str | None = None, queue: str | None = None, concurrency: int | None = None,
              rate: tuple[int, float] | str | None = None, per_key: bool = False) -> LimitSpec:
        """Declare a flow-control limit on the jobs of ``function`` or of ``queue``, held by the
        claim across every worker: at most ``concurrency`` running at once, at most ``rate`` =
        (count, seconds) starts in any such window ("30/1m" also reads); with ``per_key``, for
        each job's ``concurrency_key`` separately. Recorded when a worker or `jobline serve`
        starts; a limit an operator set with `jobline limits set` on the same target wins.

        >>> app.limit(queue="social", concurrency=5, rate=(30, 60), per_key=True)  # doctest: +SKIP
        """
        spec = limit_spec(function=function, queue=queue, concurrency=concurrency, rate=rate, per_key=per_key)
        if spec.identity in self.limits:
            raise InvalidInput(f"a limit on {spec.scope} {spec.target!r}{' per key' if per_key else ''} is "
                               "already declared")
        self.limits[spec.identity] = spec
        return spec

    async def reconcile_limits_async(self) -> list[tuple[str, str, bool, str]]:
        """Record the limits declared in code (workers and `jobline serve` do it when they start)."""
        return await (await self.ops_async()).limits.reconcile(SERVICE, list(self.limits.values()),
                                                                *self._owned_scopes())

    def _owned_scopes(self) -> tuple[list[str], list[str]]:
        functions = [f for f in self.registry if f.name not in BUILTIN_FUNCTIONS]
        return [f.name for f in functions], sorted({f.queue for f in functions})

    # -- schedules declared in code (reconciled with the database when a worker starts) ------

    def cron(self, expression: str, *, name: str | None = None, payload: Mapping[str, Any] | None = None,
             **options: Any) -> Callable:
        """Run the decorated function on a cron schedule. Put it above ``@app.function``; a
        plain callable is registered as a function named after it. The schedule is named after
        the function unless ``name`` is given. Options as :meth:`schedule`.

        >>> @app.cron("0 3 * * SUN", timezone="Europe/London")
        ... @app.function("weekly-report")
        ... def weekly_report(payload): ...
        """

        def declare(handler: Callable) -> Callable:
            registered = next((f.name for f in self.registry if f.handler is handler), None)
            if registered is None:
                registered = handler.__name__
                self.registry.add(Function.from_handler(registered, handler))
            self.schedule(name or registered, expression, registered, payload, **options)
            return handler

        return declare

    def schedule(self, name: str, expression: str, function: str | None = None,
                 payload: Mapping[str, Any] | None = None, **options: Any) -> ScheduleSpec:
        """Declare a schedule in code: every tick of ``expression`` enqueues ``function`` with
        ``payload`` (or runs ``sql="..."``). Options: sql, timezone, owner, queue, priority,
        max_attempts, overlap (skip, allow), catch_up (latest, none, all), catch_up_max,
        max_consecutive_failures (pause it after that many failed runs in a row, and notify its
        owner: docs/concepts/notifications.md).
        Workers add, update and remove code schedules as the code says when they start
        (removal only for schedules of this App's own functions: one that targets the ``sql``
        or ``http`` built-in is removed with `jobline cron rm`); schedules made at run time
        (CLI, SQL) are never touched.

        >>> app.schedule("nightly-rollup", "5 0 * * *", sql="SELECT public.rollup_daily_usage()")
        """
        if name is None:  # code schedules are matched with the database by name
            raise InvalidInput("a schedule declared in code needs a name")
        if name in self.schedules:
            raise InvalidInput(f"a schedule named {name!r} is already declared")
        spec = schedule_spec(self.registry, name, expression, function, payload, options)
        self.schedules[name] = spec
        return spec

    async def add_schedule_async(self, name: str | None, expression: str, function: str | None = None,
                                 payload: Mapping[str, Any] | None = None, *, replace: bool = False,
                                 **options: Any) -> Schedule:
        """Add a schedule at run time (as `jobline cron add` does); with ``replace``, one of the
        same name is replaced. Options as :meth:`schedule`, plus ``active``."""
        return await (await self.ops_async()).schedules.add(SERVICE, name, expression, function, payload,
                                                             replace=replace, **options)

    def add_schedule(self, name: str | None, expression: str, function: str | None = None,
                     payload: Mapping[str, Any] | None = None, *, replace: bool = False, **options: Any) -> Schedule:
        return self._bridge.run(self.add_schedule_async(name, expression, function, payload, replace=replace,
                                                        **options), "add_schedule")

    # -- pipelines declared in code (recorded in the database when a worker or serve starts) ----

    def pipeline(self, name: str, steps: list[Step | Mapping[str, Any]]) -> PipelineSpec:
        """Declare a pipeline: a graph of steps, each a function run after the steps it names
        in ``after`` (fan-out: several steps after one; fan-in: one step after several). A
        step's handler reads what those steps returned as ``ctx.upstream["step-name"]``.
        Recorded in the database when a worker or `jobline serve` of this App starts, so any
        process (CLI, HTTP, SQL ``jobline.start_pipeline``) can then start a run.

        >>> app.pipeline("publish-content", steps=[
        ...     Step("generate", function="generate-post"),
        ...     Step("post", function="post-to-platform", after=["generate"]),
        ... ])  # doctest: +SKIP
        """
        if name in self.pipelines:
            raise InvalidInput(f"a pipeline named {name!r} is already declared")
        spec = pipeline_spec(name, steps)
        self.pipelines[name] = spec
        return spec

    def _step_defaults(self, function: str) -> dict[str, Any]:
        registered = self.registry.find(function)
        if registered is None:
            return {}
        return {"queue": registered.queue, "priority": registered.priority, "max_attempts": registered.max_attempts}

    def declared_pipelines(self) -> list[tuple[str, str]]:
        """(name, steps as stored JSON) of each declared pipeline, defaults resolved from the
        registry as it is now."""
        return [(spec.name, spec.stored_json(self._step_defaults)) for spec in self.pipelines.values()]

    async def record_pipelines_async(self) -> list[str]:
        """Record the declared pipelines now (workers and `jobline serve` do it when they start);
        returns the names new or changed."""
        declared = self.declared_pipelines()
        if not declared:
            return []
        return await (await self.open_async()).pipeline_upsert_many([n for n, _ in declared], [s for _, s in declared])

    def record_pipelines(self) -> list[str]:
        return self._bridge.run(self.record_pipelines_async(), "record_pipelines")

    async def start_pipeline_async(self, name: str, payload: Mapping[str, Any] | None = None, *,
                                   owner: str | None = None,
                                   conn: psycopg.AsyncConnection | None = None) -> dict[str, Any]:
        """Start a run of ``name``: all its steps become jobs in one transaction (with ``conn``,
        inside that connection's current transaction). Returns the run (``id``, ``status``,
        ``steps``...; with ``conn``, only its id, pipeline, owner and status).

        >>> run = app.start_pipeline("publish-content", {"topic": "pgvector"}, owner="user-42")  # doctest: +SKIP

        A pipeline this App declares is recorded first if no worker has recorded it yet.
        """
        ops = await self.ops_async()
        try:
            return await ops.pipelines.start(SERVICE, name, payload, owner=owner, conn=conn)
        except PipelineNotFound:
            if conn is not None or name not in self.pipelines:
                raise
        await self.record_pipelines_async()
        return await ops.pipelines.start(SERVICE, name, payload, owner=owner)

    def start_pipeline(self, name: str, payload: Mapping[str, Any] | None = None, *, owner: str | None = None,
                       conn: psycopg.Connection | None = None) -> dict[str, Any]:
        """Sync form of :meth:`start_pipeline_async`; ``conn`` may be your own psycopg.Connection."""
        if isinstance(conn, psycopg.Connection):
            name, payload_json, owner = start_params(SERVICE, name, payload, owner)
            run_id = store_module.pipeline_start_sync(conn, name, payload_json, owner)
            return {"id": run_id, "pipeline": name, "owner": owner, "status": "running"}
        return self._bridge.run(self.start_pipeline_async(name, payload, owner=owner), "start_pipeline")

    async def get_pipeline_run_async(self, run_id: int) -> dict[str, Any]:
        """A run with its steps (status, result, attempts, times) and its history."""
        return await (await self.ops_async()).pipelines.get(SERVICE, run_id)

    def get_pipeline_run(self, run_id: int) -> dict[str, Any]:
        return self._bridge.run(self.get_pipeline_run_async(run_id), "get_pipeline_run")

    async def cancel_pipeline_run_async(self, run_id: int, reason: str | None = None) -> dict[str, Any]:
        """Cancel the unfinished steps of a running run."""
        return await (await self.ops_async()).pipelines.cancel(SERVICE, run_id, reason)

    def cancel_pipeline_run(self, run_id: int, reason: str | None = None) -> dict[str, Any]:
        return self._bridge.run(self.cancel_pipeline_run_async(run_id, reason), "cancel_pipeline_run")

    async def retry_pipeline_run_async(self, run_id: int) -> dict[str, Any]:
        """Run a failed or cancelled run again from its failed step(s), keeping earlier results."""
        return await (await self.ops_async()).pipelines.retry(SERVICE, run_id)

    def retry_pipeline_run(self, run_id: int) -> dict[str, Any]:
        return self._bridge.run(self.retry_pipeline_run_async(run_id), "retry_pipeline_run")

    # -- connection -------------------------------------------------------------------------

    async def open_async(self) -> Store:
        if self._store is None:
            url = connect.ready_database_url(self.settings)
            store = Store(url, prepared_statements=self.settings.prepared_statements,
                          timeout=self.settings.pool_timeout, listen_url=self.settings.listen_database_url)
            await store.open()
            self._store = store
            self._ops = Operations(store, self.settings, self.registry)
        return self._store

    async def ops_async(self) -> Operations:
        """The operations layer over this App's database (opening it if needed)."""
        await self.open_async()
        return self._ops

    def open(self) -> None:
        self._bridge.run(self.open_async(), "open")

    async def close_async(self) -> None:
        await self._http.aclose()
        if self._store is not None:
            store, self._store, self._ops = self._store, None, None
            await store.close()

    def close(self) -> None:
        self._bridge.run(self.close_async(), "close")
        self._bridge.close()

    def __enter__(self) -> App:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self) -> App:
        await self.open_async()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close_async()

    @property
    def store(self) -> Store:
        if self._store is None:
            raise JoblineError("the App is not open: use `with app:` / `async with app:` or call app.open()")
        return self._store

    @property
    def ops(self) -> Operations:
        """Every operation a caller may perform (operations/), on the open App's database. App's
        own methods act as the service: ``await app.ops.jobs.retry(SERVICE, 42)``."""
        self.store  # noqa: B018  (raises when not open)
        return self._ops

    # -- enqueueing ---------------------------------------------------------------------------

    async def enqueue_async(self, function: str, payload: Mapping[str, Any] | None = None, *,
                            conn: psycopg.AsyncConnection | None = None, **options: Any) -> Job:
        """Enqueue one job; with ``conn``, inside that connection's current transaction.

        Options: run_at (datetime) or delay (seconds), queue, priority, owner, max_attempts,
        depends_on (id or ids), unique_key, concurrency_key (limits per key count the job under it).
        """
        if conn is not None:
            return await store_module.job_insert_on(conn, plan_job(self.registry, function, payload, options))
        return await (await self.ops_async()).jobs.enqueue(SERVICE, function, payload, **options)

    def enqueue(self, function: str, payload: Mapping[str, Any] | None = None, *,
                conn: psycopg.Connection | None = None, **options: Any) -> Job:
        """Sync form of :meth:`enqueue_async`; ``conn`` may be your own psycopg.Connection."""
        if isinstance(conn, psycopg.Connection):
            return store_module.job_insert_sync(conn, plan_job(self.registry, function, payload, options))
        return self._bridge.run(self.enqueue_async(function, payload, **options), "enqueue")

    async def enqueue_many_async(self, jobs: Iterable[Mapping[str, Any]], *,
                                 conn: psycopg.AsyncConnection | None = None) -> list[int]:
        """Enqueue many jobs in one transaction (plain jobs sharing their options in one INSERT);
        returns their ids in the order given.
        Each item is a mapping with ``function`` and the options of :meth:`enqueue_async`."""
        if conn is not None:
            return await store_module.job_insert_many_on(conn, plan_batch(self.registry, jobs))
        return await (await self.ops_async()).jobs.enqueue_many(SERVICE, jobs)

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]], *,
                     conn: psycopg.Connection | None = None) -> list[int]:
        if isinstance(conn, psycopg.Connection):
            return store_module.job_insert_many_sync(conn, plan_batch(self.registry, jobs))
        return self._bridge.run(self.enqueue_many_async(jobs), "enqueue_many")

    # -- jobs ---------------------------------------------------------------------------------

    async def get_job_async(self, job_id: int) -> Job:
        return await (await self.ops_async()).jobs.get(SERVICE, job_id)

    def get_job(self, job_id: int) -> Job:
        return self._bridge.run(self.get_job_async(job_id), "get_job")

    # -- queues -------------------------------------------------------------------------------

    async def pause_queue_async(self, queue: str, reason: str | None = None) -> dict[str, Any]:
        """Pause ``queue`` for every worker (its jobs stay pending; schedules keep adding to it)
        until :meth:`resume_queue`. The pause is stored, so it outlives every process."""
        return await (await self.ops_async()).queues.pause(SERVICE, queue, reason)

    def pause_queue(self, queue: str, reason: str | None = None) -> dict[str, Any]:
        return self._bridge.run(self.pause_queue_async(queue, reason), "pause_queue")

    async def resume_queue_async(self, queue: str) -> dict[str, Any]:
        """Resume ``queue``: idle workers are woken and claim its due jobs at once."""
        return await (await self.ops_async()).queues.resume(SERVICE, queue)

    def resume_queue(self, queue: str) -> dict[str, Any]:
        return self._bridge.run(self.resume_queue_async(queue), "resume_queue")

    # -- notifications (operations/notifications.py) --------------------------------------------

    async def subscribe_async(self, url: str, *, events: Iterable[str] | None = None,
                              headers: Mapping[str, str] | None = None, owner: str | None = None) -> dict[str, Any]:
        """POST each event (of ``events``; None: every kind) to ``url`` with ``headers``, by a
        durable ``http`` job. Without ``owner``, the operator's subscription, which receives every
        event (its URL and headers may use ``{{secret:NAME}}``); with it, that user's, which
        receives their events (``{{owner_secret:NAME}}``). Returns the subscription, with its id.

        >>> app.subscribe("https://hooks.example.com/jobline", events=["job.failed", "function.failing"],
        ...               headers={"Authorization": "Bearer {{secret:hook_token}}"})  # doctest: +SKIP
        """
        return await (await self.ops_async()).notifications.subscribe(
            SERVICE, url, events=None if events is None else list(events), headers=headers, owner=owner)

    def subscribe(self, url: str, *, events: Iterable[str] | None = None, headers: Mapping[str, str] | None = None,
                  owner: str | None = None) -> dict[str, Any]:
        return self._bridge.run(self.subscribe_async(url, events=events, headers=headers, owner=owner), "subscribe")

    async def unsubscribe_async(self, subscription_id: int) -> dict[str, Any]:
        """Remove a subscription by id (NotFound if there is none)."""
        return await (await self.ops_async()).notifications.unsubscribe(SERVICE, subscription_id)

    def unsubscribe(self, subscription_id: int) -> dict[str, Any]:
        return self._bridge.run(self.unsubscribe_async(subscription_id), "unsubscribe")

    async def subscriptions_async(self) -> list[dict[str, Any]]:
        """Every subscription (owner None: the operator's)."""
        return await (await self.ops_async()).notifications.subscriptions(SERVICE)

    def subscriptions(self) -> list[dict[str, Any]]:
        return self._bridge.run(self.subscriptions_async(), "subscriptions")

    async def notifications_async(self, *, kind: str | None = None, since: dt.datetime | None = None,
                                  owner: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest events, newest first: of ``kind``, at or after ``since``, of ``owner``'s.

        >>> [n["subject"] for n in app.notifications(kind="function.failing")]  # doctest: +SKIP
        """
        page = await (await self.ops_async()).notifications.list(SERVICE, kind=kind, since=since, owner=owner,
                                                                 limit=limit)
        return page.rows

    def notifications(self, *, kind: str | None = None, since: dt.datetime | None = None, owner: str | None = None,
                      limit: int = 50) -> list[dict[str, Any]]:
        return self._bridge.run(self.notifications_async(kind=kind, since=since, owner=owner, limit=limit),
                                "notifications")

    # -- secrets (vault.py encrypts in this process; the database sees only ciphertext) ---------

    def master_keys(self) -> vault.MasterKeys:
        """The keys of JOBLINE_MASTER_KEY; ConfigError saying how to create one when unset."""
        return vault.MasterKeys.from_settings(self.settings)

    async def set_secret_async(self, name: str, value: str, *, owner: str | None = None) -> vault.SecretInfo:
        """Encrypt ``value`` under the master key and store it as the secret ``name``, replacing
        any previous value. Without ``owner`` it is the operator's, which calls written by the
        operator use as ``{{secret:NAME}}``; with ``owner`` (a user id) it is that user's, which
        an operator's call made for a job the user owns uses as ``{{owner_secret:NAME}}``.

        >>> app.set_secret("stripe_key", os.environ["STRIPE_KEY"])  # doctest: +SKIP
        >>> app.set_secret("linkedin_token", token, owner="user-42")  # doctest: +SKIP
        """
        vault.check_name(name), vault.check_value(value), self.master_keys()  # refused before connecting
        return await (await self.ops_async()).secrets.set(SERVICE, name, value, owner=owner)

    def set_secret(self, name: str, value: str, *, owner: str | None = None) -> vault.SecretInfo:
        return self._bridge.run(self.set_secret_async(name, value, owner=owner), "set_secret")

    async def list_secrets_async(self, *, owner: str | None = None,
                                 every_owner: bool = False) -> list[vault.SecretInfo]:
        """The operator's secrets (or ``owner``'s, or with ``every_owner`` everyone's): name,
        owner, key id and times; never values (needs no master key)."""
        return await (await self.ops_async()).secrets.list(SERVICE, owner=owner, every_owner=every_owner)

    def list_secrets(self, *, owner: str | None = None, every_owner: bool = False) -> list[vault.SecretInfo]:
        return self._bridge.run(self.list_secrets_async(owner=owner, every_owner=every_owner), "list_secrets")

    async def delete_secret_async(self, name: str, *, owner: str | None = None) -> None:
        """Remove a secret (SecretNotFound if there is none); needs no master key."""
        await (await self.ops_async()).secrets.remove(SERVICE, name, owner=owner)

    def delete_secret(self, name: str, *, owner: str | None = None) -> None:
        self._bridge.run(self.delete_secret_async(name, owner=owner), "delete_secret")

    async def rotate_secrets_async(self) -> Rotation:
        """Re-seal every secret under the first key of JOBLINE_MASTER_KEY="NEW,OLD"; safe to
        re-run after a crash (see :func:`jobline.operations.secrets.rotate`)."""
        self.master_keys()  # no key: say so before connecting
        return await (await self.ops_async()).secrets.rotate(SERVICE)

    def rotate_secrets(self) -> Rotation:
        return self._bridge.run(self.rotate_secrets_async(), "rotate_secrets")

    # -- running ------------------------------------------------------------------------------

    async def worker_async(self, **options: Any) -> Worker:
        """A worker for this App's functions (see :class:`jobline.runtime.worker.Worker`)."""
        options.setdefault("schedules", list(self.schedules.values()))
        options.setdefault("pipelines", self.declared_pipelines())
        options.setdefault("owned_functions", [n for n in self.registry.names() if n not in BUILTIN_FUNCTIONS])
        options.setdefault("limits", list(self.limits.values()))
        options.setdefault("owned_queues", self._owned_scopes()[1])
        return Worker(await self.open_async(), self.registry, self.settings, **options)

    async def invoke_async(self, function: Function, payload: dict, *, owner: str | None,
                           threads: ThreadPoolExecutor, connections: ConnectionLimit) -> Any:
        """Call ``function``'s handler now, in this process, as `/functions/v1/<name>` does: not a
        job (no row, no retry). A handler that takes a context gets one with ``job_id`` None,
        attempt 1 of 1, ``owner`` and this App's database; sync handlers run in ``threads``."""
        ctx = None
        if function.wants_context:
            ctx = JobContext(None, 1, 1, function.name, function.queue, owner, "gateway", await self.open_async(),
                             connections)
        return await call_handler(function, payload, ctx, threads)

    async def maintenance_async(self) -> Maintenance:
        """The maintenance role alone (rescue of expired leases, retention), for a process that
        runs no worker, such as `jobline serve`; start() and stop() it."""
        return Maintenance(await self.open_async(), self.settings)

    async def run_worker_async(self, **options: Any) -> None:
        worker = await self.worker_async(**options)
        await worker.run()

    async def process_async(self, limit: int | None = None, **options: Any) -> Summary:
        """Run what is due (and becomes due meanwhile) until none is left; return a summary."""
        worker = await self.worker_async(**options)
        return await worker.run_until_idle(limit)

    async def run_job_async(self, job_id: int) -> Job:
        """Run the pending job ``job_id`` now, in this process, whatever its run_at or queue (a
        paused queue included), and return it as it ended up: `jobline jobs run ID`. The job's
        function must be one of this App's."""
        worker = await self.worker_async(concurrency=1, scheduler=False, maintenance=False)
        await worker.run_one(job_id)
        return await self.get_job_async(job_id)

    def run_job(self, job_id: int) -> Job:
        return self._bridge.run(self.run_job_async(job_id), "run_job")

    def process(self, limit: int | None = None, **options: Any) -> Summary:
        return self._bridge.run(self.process_async(limit, **options), "process")


def _backoff(backoff: Backoff | None, base: float | None, factor: float | None, max_delay: float | None,
             jitter: float | None) -> Backoff:
    """``backoff`` itself, or one built from the given parts and the defaults."""
    if backoff is not None:
        return backoff
    defaults = Backoff()
    return Backoff(base=defaults.base if base is None else base,
                   factor=defaults.factor if factor is None else factor,
                   max_delay=defaults.max_delay if max_delay is None else max_delay,
                   jitter=defaults.jitter if jitter is None else jitter)
