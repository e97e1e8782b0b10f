"""App: the functions a codebase defines, and the way to enqueue work and run workers.

Each public operation comes in a pair: ``name()`` is sync, ``name_async()`` is async; the sync
form runs the async one on a background loop (``_sync.py``), so the logic exists once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import psycopg

from . import vault
from ._sync import SyncBridge
from .db import connect
from .db import store as store_module
from .db.store import Store
from .errors import InvalidInput, JoblineError
from .functions import http as http_function
from .functions import sql as sql_function
from .job import BUILTIN_FUNCTIONS, Batch, Job, NewJob, check_name, encode_payload, new_job
from .retry import Backoff
from .schedule import Schedule, ScheduleSpec, in_namespace, new_schedule
from .runtime.registry import Function, Registry
from .runtime.worker import Summary, Worker
from .settings import Settings

_ENQUEUE_OPTIONS = frozenset({"payload", "run_at", "delay", "queue", "priority", "owner", "max_attempts",
                              "depends_on", "unique_key"})


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
        self._bridge = SyncBridge()
        self.schedules: dict[str, ScheduleSpec] = {}  # declared in code, by name
        self.registry.add(Function.from_handler(sql_function.NAME, sql_function.run_sql))
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
                 verify_jwt: bool = True) -> Callable:
        """Register a sync or async handler ``f(payload)`` or ``f(payload, ctx)`` under ``name``.

        ``timeout`` is in seconds. Backoff before retry n is ``base * factor ** (n - 1)`` seconds,
        capped at ``backoff_max``, with ``±backoff_jitter`` random spread. ``verify_jwt=False``
        lets `jobline serve` invoke it at ``/functions/v1/<name>`` without a credential (webhooks).
        """
        backoff = _backoff(backoff, backoff_base, backoff_factor, backoff_max, backoff_jitter)

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
        max_attempts, overlap (skip, allow), catch_up (latest, none, all), catch_up_max.
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
        spec = self._schedule_spec(name, expression, function, payload, options)
        self.schedules[name] = spec
        return spec

    def _schedule_spec(self, name: str | None, expression: str, function: str | None,
                       payload: Mapping[str, Any] | None, options: Mapping[str, Any]) -> ScheduleSpec:
        """Validate a schedule; its jobs take queue, priority and max_attempts from the target
        function's registration when it is known here and the caller did not say."""
        registered = self.registry.find(function) if isinstance(function, str) else None
        if registered is not None:
            options = {"queue": registered.queue, "priority": registered.priority,
                       "max_attempts": registered.max_attempts, **options}
        return new_schedule(name, expression, function, payload, **options)

    async def add_schedule_async(self, name: str | None, expression: str, function: str | None = None,
                                 payload: Mapping[str, Any] | None = None, *, replace: bool = False,
                                 scope: str | None = None, **options: Any) -> Schedule:
        """Add a schedule at run time (as `jobline cron add` does); with ``replace``, one of the
        same name is replaced. With ``scope``, a user's id (the HTTP API's users), ``name`` is
        one of that user's own names, stored as ``<scope>/<name>`` (schedule.owned_name), and
        only a schedule that user owns is replaced. Options as :meth:`schedule`, plus ``active``."""
        spec = self._schedule_spec(name, expression, function, payload, options)
        if scope is not None:
            spec = in_namespace(spec, scope)
        return await (await self.open_async()).schedule_upsert(spec, replace=replace, scope=scope)

    def add_schedule(self, name: str | None, expression: str, function: str | None = None,
                     payload: Mapping[str, Any] | None = None, *, replace: bool = False, scope: str | None = None,
                     **options: Any) -> Schedule:
        return self._bridge.run(self.add_schedule_async(name, expression, function, payload, replace=replace,
                                                        scope=scope, **options), "add_schedule")

    # -- connection -------------------------------------------------------------------------

    async def open_async(self) -> Store:
        if self._store is None:
            url = connect.ready_database_url(self.settings)
            store = Store(url, prepared_statements=self.settings.prepared_statements,
                          timeout=self.settings.pool_timeout)
            await store.open()
            self._store = store
        return self._store

    def open(self) -> None:
        self._bridge.run(self.open_async(), "open")

    async def close_async(self) -> None:
        await self._http.aclose()
        if self._store is not None:
            store, self._store = self._store, None
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

    # -- enqueueing ---------------------------------------------------------------------------

    def _new_job(self, function: str, payload: Mapping[str, Any] | None, options: Mapping[str, Any]) -> NewJob:
        """Validate a request, taking queue, priority and max_attempts from the function's
        registration when it is known here and the caller did not say."""
        unknown = set(options) - _ENQUEUE_OPTIONS
        if unknown:
            raise InvalidInput(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
        defaults = {}
        registered = self.registry.find(function) if isinstance(function, str) else None
        if registered is not None:
            defaults = {"queue": registered.queue, "priority": registered.priority,
                        "max_attempts": registered.max_attempts}
        return new_job(function, payload, **{**defaults, **{k: v for k, v in options.items() if v is not None}})

    def _new_batch(self, items: Iterable[Mapping[str, Any]]) -> Batch:
        """Validate a bulk enqueue. Items sharing a function and options (the usual case) are
        validated once, then only their payloads are encoded."""
        batch = Batch()
        validated: dict[tuple, NewJob] = {}
        for index, item in enumerate(items):
            if not isinstance(item, Mapping) or "function" not in item:
                raise InvalidInput(f"job {index} must be a mapping with a 'function' key")
            options = {k: v for k, v in item.items() if k != "function" and k != "payload"}
            key = (item["function"], *options.items())
            try:
                template = validated.get(key)
            except TypeError:  # an unhashable option (a list of dependencies): no sharing
                key, template = None, None
            if template is None:
                template = self._new_job(item["function"], None, options)
                if key is not None:
                    validated[key] = template
            if template.is_simple and key is not None:
                group = batch.groups.get(key)
                if group is None:
                    group = batch.groups[key] = (template, [], [])
                group[1].append(encode_payload(item.get("payload")))
                group[2].append(index)
            else:
                batch.singles.append((index, template.with_payload(item.get("payload"))))
            batch.size = index + 1
        return batch

    async def enqueue_async(self, function: str, payload: Mapping[str, Any] | None = None, *,
                            conn: psycopg.AsyncConnection | None = None, **options: Any) -> Job:
        """Enqueue one job; with ``conn``, inside that connection's current transaction.

        Options: run_at (datetime) or delay (seconds), queue, priority, owner, max_attempts,
        depends_on (id or ids), unique_key.
        """
        new = self._new_job(function, payload, options)
        if conn is not None:
            return await store_module.job_insert_on(conn, new)
        return await (await self.open_async()).job_insert(new)

    def enqueue(self, function: str, payload: Mapping[str, Any] | None = None, *,
                conn: psycopg.Connection | None = None, **options: Any) -> Job:
        """Sync form of :meth:`enqueue_async`; ``conn`` may be your own psycopg.Connection."""
        if isinstance(conn, psycopg.Connection):
            return store_module.job_insert_sync(conn, self._new_job(function, payload, options))
        return self._bridge.run(self.enqueue_async(function, payload, **options), "enqueue")

    async def enqueue_many_async(self, jobs: Iterable[Mapping[str, Any]], *,
                                 conn: psycopg.AsyncConnection | None = None) -> list[int]:
        """Enqueue many jobs in one transaction (plain jobs sharing their options in one INSERT);
        returns their ids in the order given.
        Each item is a mapping with ``function`` and the options of :meth:`enqueue_async`."""
        batch = self._new_batch(jobs)
        if conn is not None:
            return await store_module.job_insert_many_on(conn, batch)
        return await (await self.open_async()).job_insert_many(batch)

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any]], *,
                     conn: psycopg.Connection | None = None) -> list[int]:
        if isinstance(conn, psycopg.Connection):
            return store_module.job_insert_many_sync(conn, self._new_batch(jobs))
        return self._bridge.run(self.enqueue_many_async(jobs), "enqueue_many")

    # -- jobs ---------------------------------------------------------------------------------

    async def get_job_async(self, job_id: int) -> Job:
        return await (await self.open_async()).job_get(job_id)

    def get_job(self, job_id: int) -> Job:
        return self._bridge.run(self.get_job_async(job_id), "get_job")

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
        owner = _secret_owner(owner)
        sealed = vault.seal(self.master_keys(), name, value, owner)  # validates before connecting
        store = await self.open_async()
        return vault.SecretInfo.from_row(await store.secret_upsert(name, sealed, owner,
                                                                   max_per_owner=vault.MAX_PER_USER))

    def set_secret(self, name: str, value: str, *, owner: str | None = None) -> vault.SecretInfo:
        return self._bridge.run(self.set_secret_async(name, value, owner=owner), "set_secret")

    async def list_secrets_async(self, *, owner: str | None = None,
                                 every_owner: bool = False) -> list[vault.SecretInfo]:
        """The operator's secrets (or ``owner``'s, or with ``every_owner`` everyone's): name,
        owner, key id and times; never values (needs no master key)."""
        rows = await (await self.open_async()).secret_list(_secret_owner(owner), every_owner=every_owner)
        return [vault.SecretInfo.from_row(row) for row in rows]

    def list_secrets(self, *, owner: str | None = None, every_owner: bool = False) -> list[vault.SecretInfo]:
        return self._bridge.run(self.list_secrets_async(owner=owner, every_owner=every_owner), "list_secrets")

    async def delete_secret_async(self, name: str, *, owner: str | None = None) -> None:
        """Remove a secret (SecretNotFound if there is none); needs no master key."""
        await (await self.open_async()).secret_delete(vault.check_name(name), _secret_owner(owner))

    def delete_secret(self, name: str, *, owner: str | None = None) -> None:
        self._bridge.run(self.delete_secret_async(name, owner=owner), "delete_secret")

    async def rotate_secrets_async(self) -> vault.Rotation:
        """Re-seal every secret under the first key of JOBLINE_MASTER_KEY="NEW,OLD"; safe to
        re-run after a crash (see :func:`jobline.vault.rotate`)."""
        keys = self.master_keys()
        return await vault.rotate(await self.open_async(), keys)

    def rotate_secrets(self) -> vault.Rotation:
        return self._bridge.run(self.rotate_secrets_async(), "rotate_secrets")

    # -- running ------------------------------------------------------------------------------

    async def worker_async(self, **options: Any) -> Worker:
        """A worker for this App's functions (see :class:`jobline.runtime.worker.Worker`)."""
        options.setdefault("schedules", list(self.schedules.values()))
        options.setdefault("owned_functions", [n for n in self.registry.names() if n not in BUILTIN_FUNCTIONS])
        return Worker(await self.open_async(), self.registry, self.settings, **options)

    async def run_worker_async(self, **options: Any) -> None:
        worker = await self.worker_async(**options)
        await worker.run()

    async def process_async(self, limit: int | None = None, **options: Any) -> Summary:
        """Run what is due (and becomes due meanwhile) until none is left; return a summary."""
        worker = await self.worker_async(**options)
        return await worker.run_until_idle(limit)

    def process(self, limit: int | None = None, **options: Any) -> Summary:
        return self._bridge.run(self.process_async(limit, **options), "process")


def _secret_owner(owner: str | None) -> str | None:
    return None if owner is None else check_name(owner, "a secret's owner")


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
