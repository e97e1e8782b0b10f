"""Faults on a private embedded PostgreSQL (the ``private_postgres`` fixture's server): refuse
connections for a while and come back on the same port, or terminate every backend.

Shared by the recovery tests (tests/e2e/test_recovery.py) and bench/recovery.py, which measures
how long each process takes to use the database again (docs/concepts/reliability.md).
"""

from __future__ import annotations

import shlex
import time

import psycopg

from jobline.db.embedded import EmbeddedPostgres


def down(server: EmbeddedPostgres, mode: str = "fast") -> None:
    """Stop the server: from now on connections are refused. ``mode="immediate"`` stops it as
    a crash would (no checkpoint; recovery from the WAL at the next start)."""
    server._run([server._tool("pg_ctl"), "stop", "-D", str(server.pgdata), "-m", mode, "-w", "-t", "60"],
                "stop the private PostgreSQL")


def up(server: EmbeddedPostgres) -> None:
    """Start the server again with the options (and so the port) it had before ``down()``.
    ``EmbeddedPostgres.ensure_running()`` would pick a new free port, which no client knows."""
    options = shlex.split((server.pgdata / "postmaster.opts").read_text())[1:]  # minus the binary
    server._run([server._tool("pg_ctl"), "start", "-D", str(server.pgdata), "-l", str(server.log_file),
                 "-w", "-t", "60", "-o", shlex.join(options)], "start the private PostgreSQL")


def terminate_backends(url: str) -> int:
    """pg_terminate_backend every other connection to the database of ``url``; how many."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0]


def wait_accepting(url: str, timeout: float = 60.0) -> float:
    """Block until the server accepts a connection; returns time.monotonic() at that moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return time.monotonic()
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
