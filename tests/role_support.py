"""Database roles for tests of pg_cron's role model: made with random names (roles are
cluster-wide, and other test runs share the server), and dropped afterwards with what they own."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def as_role(url: str, role: str) -> str:
    """``url`` connecting as ``role`` (the test servers trust local connections)."""
    params = conninfo_to_dict(url)
    params["user"] = role
    params.pop("password", None)
    return make_conninfo(**params)


class Roles:
    """``roles.make("alice")`` creates a LOGIN role ``alice_<hex>`` with USAGE ON SCHEMA jobline
    in the test's database and returns its name; ``roles.sql(name)`` runs statements as it."""

    def __init__(self, db_url: str):
        self.db_url = db_url
        self.made: list[str] = []
        self.databases: list[str] = []   # other databases the roles may own things in

    def make(self, prefix: str, *, usage: bool = True, options: str = "") -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{name}" LOGIN {options}')
            self.made.append(name)
            if usage:
                conn.execute(f'GRANT USAGE ON SCHEMA jobline TO "{name}"')
        return name

    def url(self, role: str) -> str:
        return as_role(self.db_url, role)

    def sql(self, role: str) -> Callable:
        """Run one statement as ``role`` in autocommit and return all rows."""

        def run(statement: str, params=None) -> list[tuple]:
            with psycopg.connect(self.url(role), autocommit=True) as conn:
                cur = conn.execute(statement, params)
                return cur.fetchall() if cur.description else []

        return run

    def drop_all(self) -> None:
        for url in [self.db_url, *self.databases]:
            with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True) as conn:
                for name in self.made:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(f'DROP OWNED BY "{name}" CASCADE')
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            for name in self.made:
                with contextlib.suppress(psycopg.Error):
                    conn.execute(f'DROP ROLE IF EXISTS "{name}"')


@contextlib.contextmanager
def roles_of(db_url: str) -> Iterator[Roles]:
    made = Roles(db_url)
    try:
        yield made
    finally:
        made.drop_all()
