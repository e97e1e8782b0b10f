"""R12(e): calls queued with jobline.http_post survive a crash-restart of PostgreSQL and are all
delivered afterwards (pg_net's unlogged queue loses them). Its own embedded server, a real
receiver on 127.0.0.1, and a real `jobline worker` process."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import psycopg

from receiver import Receiver

CALLS = 100


def wait_until(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not all calls were delivered in time"
        time.sleep(0.1)


def test_queued_http_posts_survive_an_immediate_restart_and_are_delivered(private_postgres):
    server, url = private_postgres
    worker = None
    with Receiver() as receiver:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                # The contrast: an unlogged table (what pg_net queues in) is emptied by the crash.
                conn.execute("CREATE UNLOGGED TABLE unlogged_queue (n int)")
                conn.execute("INSERT INTO unlogged_queue VALUES (1)")
                for n in range(CALLS):  # each in its own transaction, committed, like separate callers
                    conn.execute("SELECT jobline.http_post(url := %s, body := jsonb_build_object('n', %s::int),"
                                 " timeout_milliseconds := 2000)", [receiver.url(f"/call/{n}"), n])
            server.restart(mode="immediate")  # no shutdown checkpoint: recovery replays the WAL

            with psycopg.connect(url) as conn:
                assert conn.execute("SELECT count(*) FROM unlogged_queue").fetchone()[0] == 0
                assert conn.execute("SELECT count(*) FROM jobline.jobs WHERE function = 'http' "
                                    "AND status = 'pending'").fetchone()[0] == CALLS
            assert receiver.requests == []

            env = {**os.environ, "JOBLINE_DATABASE_URL": url, "JOBLINE_POLL_INTERVAL": "0.5",
                   "JOBLINE_HTTP_ALLOW": "127.0.0.0/8",
                   "PYTHONPATH": str(pathlib.Path(__file__).parents[1])}
            worker = subprocess.Popen([sys.executable, "-m", "jobline", "worker"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

            def delivered() -> bool:
                with psycopg.connect(url) as conn:
                    return conn.execute("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'"
                                        ).fetchone()[0] == CALLS

            wait_until(delivered, timeout=60)
        finally:
            if worker is not None:
                worker.send_signal(signal.SIGTERM)
                output = worker.communicate(timeout=30)[0]
        paths = sorted(int(seen.path.rsplit("/", 1)[1]) for seen in receiver.requests)
        bodies = {seen.json()["n"] for seen in receiver.requests}
    assert paths == list(range(CALLS)), "each call delivered exactly once"
    assert bodies == set(range(CALLS))
    assert worker.returncode == 0, output
    assert "Traceback" not in output, output
