"""Fixtures on a real PostgreSQL: JOBLINE_TEST_DATABASE_URL when set, else an embedded one.

A template database is migrated once per session; every test gets its own clone of it
(CREATE DATABASE ... TEMPLATE), so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobline import App
from jobline.db import migrate
from jobline.settings import Settings


def url_for(server_url: str, dbname: str) -> str:
    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def pg_server_url():
    url = os.environ.get("JOBLINE_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from jobline.db.embedded import EmbeddedPostgres

    data_dir = tempfile.mkdtemp(prefix="jobline-test-")
    os.chmod(data_dir, 0o755)  # as root, PostgreSQL runs as `nobody`, which must reach it
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.ensure_running()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _admin(server_url: str, *statements: str) -> None:
    with psycopg.connect(url_for(server_url, "postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="session")
def pg_template(pg_server_url):
    name = f"jobline_tpl_{secrets.token_hex(4)}"
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    migrate.migrate(url_for(pg_server_url, name))
    yield name
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def private_postgres():
    """An embedded PostgreSQL of the test's own (to restart or crash), migrated: (server, url)."""
    from jobline.db.embedded import EmbeddedPostgres

    parent = tempfile.mkdtemp(prefix="jobline-private-")
    os.chmod(parent, 0o755)  # as root, PostgreSQL runs as `nobody`, which must reach it
    server = EmbeddedPostgres(os.path.join(parent, "data"))
    try:
        url = server.ensure_running()
        migrate.migrate(url)
        yield server, url
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def empty_db_url(pg_server_url):
    """A database with no jobline schema."""
    name = f"t_{secrets.token_hex(6)}"
    _admin(pg_server_url, f"CREATE DATABASE {name}")
    yield url_for(pg_server_url, name)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_url(pg_server_url, pg_template):
    name = f"t_{secrets.token_hex(6)}"
    _admin(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield url_for(pg_server_url, name)
    _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(db_url) -> Settings:
    return Settings(database_url=db_url, lease_seconds=30, poll_interval=0.2)


@pytest.fixture
async def app(settings):
    app = App(settings=settings)
    await app.open_async()
    yield app
    await app.close_async()


@pytest.fixture
async def store(app):
    return app.store


@pytest.fixture
def sql(db_url) -> Callable:
    """Run one statement in autocommit and return all rows (for setting up and checking state)."""

    def run(statement: str, params=None) -> list[tuple]:
        with psycopg.connect(db_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    return run


async def eventually(check: Callable, timeout: float = 10.0, interval: float = 0.02):
    """Wait until ``check()`` returns something truthy (awaiting it if needed); return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(app: App):
    """A worker of ``app`` running in the background for the duration of the block."""
    worker = await app.worker_async()
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        yield worker
    finally:
        worker.request_stop()
        await task


@pytest.fixture
def spans():
    """The spans a test makes, exported to memory by a TracerProvider set for the test (see
    tests/otel_support.py); skips the test when the otel packages are not installed."""
    pytest.importorskip("opentelemetry.sdk.trace")
    import otel_support

    with otel_support.traced() as exporter:
        yield exporter


@pytest.fixture
def processes():
    """Subprocesses a test starts; killed at the end if still running."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def start_jobline(args: list[str], db_url: str, *, output=subprocess.PIPE, **env) -> subprocess.Popen:
    """Start `python -m jobline ...` as a real process against ``db_url``. Its output goes to a pipe
    (read it with communicate()), or to ``output``: a long run that nobody reads must not block
    on a full pipe."""
    environment = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1",
                   "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]),
                   **{k: str(v) for k, v in env.items()}}
    return subprocess.Popen([sys.executable, "-m", "jobline", *args], env=environment,
                            stdout=output, stderr=subprocess.STDOUT, text=True)


def enqueue(sql, function: str, owner: str | None, **options) -> int:
    """A job inserted through jobline.enqueue (the state to test, not the system under test)."""
    args = "".join(f", {k} => %({k})s" for k in options)
    return sql(f"SELECT jobline.enqueue(%(f)s, owner => %(owner)s{args})", {"f": function, "owner": owner,
                                                                             **options})[0][0]
