"""A canary secret traced through everything a database operator or an on-call engineer can read
(issue 8): a PostgreSQL of the test's own logs every statement with its parameters, jobline logs
at DEBUG, receivers echo the value in every encoding the scrubber claims, a user tries to have it
filled in, and then the server's log, pg_dump and jobline's log are searched for the value in
every form (tests/canary.py: raw, hex, base64 at each alignment, percent- and JSON-encoded).

pg_stat_statements keeps statements with their parameters replaced by $1, $2..., so it cannot
hold a value that a statement carries; the embedded PostgreSQL does not ship it, so the
statement log, which does show parameters, is the stronger check made here."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import pathlib

import psycopg

import canary
from jobline import App, vault
from jobline.settings import Settings
from receiver import Receiver, Reply

CANARY = "canary-TRACE-5e1c-Zq/+=&value"


def echo_everywhere(seen) -> Reply:
    token = seen.headers.get("x-token", "")
    kind = seen.path.strip("/")
    if kind == "json":
        return Reply(200, {"got": seen.headers, "body": seen.body.decode()})
    if kind == "utf-16":
        return Reply(200, f"token {token}".encode("utf-16-le"), {"Content-Type": "text/plain; charset=utf-16-le"})
    if kind == "base64":
        return Reply(200, base64.b64encode(token.encode()).decode())
    if kind == "error":
        return Reply(401, f"invalid token {token}", {"X-Request-Id": token})
    return Reply(302 if kind == "redirect" else 200, "", {"Location": f"/json?t={token}"})


async def test_a_secret_is_in_no_log_dump_or_result(private_postgres, caplog):
    caplog.set_level(logging.DEBUG)
    server, url = private_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        conn.execute("SELECT pg_reload_conf()")
        log_file = pathlib.Path(conn.execute("SHOW data_directory").fetchone()[0]).parent / "log" / "postgresql.log"
    start = log_file.stat().st_size
    settings = Settings(database_url=url, master_key=vault.generate_key(), http_allow="127.0.0.0/8",
                        poll_interval=0.2)
    with Receiver(respond=echo_everywhere) as receiver:
        app = App(settings=settings)
        app.http_function("hook", url=receiver.url("/json"), max_attempts=1,
                          headers={"X-Token": "{{secret:trace}}"})
        async with app:
            await app.set_secret_async("trace", CANARY)
            await app.set_secret_async("trace", CANARY, owner="u1")
            for kind in ("json", "utf-16", "base64", "error", "redirect"):
                await app.enqueue_async("http", {"url": receiver.url(f"/{kind}"), "headers": {
                    "X-Token": "{{secret:trace}}"}, "body": {"t": "{{secret:trace}}"}}, max_attempts=1)
            await app.enqueue_async("hook", {"msg": "{{secret:trace}}"}, owner="u1")  # data: not resolved
            summary = await app.process_async()
        assert summary.processed == 6
        sent = [seen for seen in receiver.requests if seen.headers.get("x-token") == CANARY]
        assert len(sent) >= 6  # every call carried the value (the redirect twice)
        [hook] = [seen for seen in receiver.requests if b'"msg"' in seen.body]
        assert json.loads(hook.body) == {"msg": "{{secret:trace}}"}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET log_statement")
        conn.execute("SELECT pg_reload_conf()")
        stored = conn.execute("SELECT string_agg(row_to_json(j)::text, ' ') FROM jobline.jobs j").fetchone()[0]
    with open(log_file, "rb") as handle:
        handle.seek(start)
        statements = handle.read()
    assert b"jobline.jobs" in statements and b"Parameters:" in statements  # the log did capture them
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    dumped = canary.pg_dump(url)
    for where, blob in (("statement log", statements), ("jobline's log", logged.encode()),
                        ("stored rows", stored.encode()), ("pg_dump", dumped or b"")):
        try:
            canary.assert_nowhere(blob, CANARY)
        except AssertionError as exc:
            raise AssertionError(f"the canary is in the {where}: {exc}") from None
    assert "{{secret:trace}}" in stored
