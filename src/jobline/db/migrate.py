"""Forward-only schema migrations: ``migrations/NNNN_name.sql``, each in one transaction.

Each migration runs under a transaction-scoped advisory lock (which works through
transaction-mode poolers), and the applied set is re-read after taking it, so any number of
processes may migrate an empty database at once: one applies each migration, the others wait
and then find nothing left to do. Nothing is prepared (the few statements run once or twice), so
`jobline db migrate` works through a transaction-mode pooler too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from importlib import resources

import psycopg

from .store import translate_errors

log = logging.getLogger(__name__)

# An arbitrary constant identifying "jobline migrations" among the database's advisory locks.
MIGRATION_LOCK_KEY = 0x6A6F626C696E65  # "jobline"

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS jobline;
CREATE TABLE IF NOT EXISTS jobline.schema_migrations (
  version    integer PRIMARY KEY,
  name       text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclasses.dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: dt.datetime | None  # None: pending

    def to_dict(self) -> dict:
        return {"version": self.version, "name": self.name,
                "applied_at": self.applied_at.isoformat() if self.applied_at else None,
                "state": "applied" if self.applied_at else "pending"}


def available() -> list[Migration]:
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def _applied(conn: psycopg.Connection) -> dict[int, dt.datetime]:
    exists = conn.execute("SELECT to_regclass('jobline.schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    return dict(conn.execute("SELECT version, applied_at FROM jobline.schema_migrations").fetchall())


def status(url: str) -> list[MigrationStatus]:
    with translate_errors(), psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        applied = _applied(conn)
    return [MigrationStatus(m.version, m.name, applied.get(m.version)) for m in available()]


def migrate(url: str) -> list[Migration]:
    """Apply every pending migration; returns the ones this process applied."""
    done = []
    with translate_errors(), psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        for migration in available():
            if migration.version in _applied(conn):
                continue
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK_KEY])
                conn.execute(_BOOTSTRAP)
                if migration.version in _applied(conn):  # another process got there first
                    continue
                conn.execute(migration.sql.encode())  # bytes: no parameter parsing of the file
                conn.execute("INSERT INTO jobline.schema_migrations (version, name) VALUES (%s, %s)",
                             [migration.version, migration.name])
            log.info("migration.applied", extra={"version": migration.version, "migration": migration.name})
            done.append(migration)
    return done


def pending(url: str) -> list[MigrationStatus]:
    return [m for m in status(url) if m.applied_at is None]
