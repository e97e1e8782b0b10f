"""A worker survives a PostgreSQL restart and resumes on its own (its own embedded server)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import psycopg



def wait_until(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except psycopg.OperationalError:
            pass  # the server is restarting
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_worker_resumes_after_postgres_restart(private_postgres):
    server, url = private_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE seen (job_id bigint)")

    def enqueue_and_count(job_count: int) -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT jobline.enqueue('record')")
            return conn.execute("SELECT count(*) FROM seen").fetchone()[0]

    def seen() -> int:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM seen").fetchone()[0]

    env = {**os.environ, "JOBLINE_DATABASE_URL": url, "JOBLINE_POLL_INTERVAL": "0.5",
           "PYTHONPATH": str(pathlib.Path(__file__).parent)}
    worker = subprocess.Popen([sys.executable, "-m", "jobline", "--app", "restart_app:app", "worker"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        enqueue_and_count(1)
        wait_until(lambda: seen() == 1)
        server.restart()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT jobline.enqueue('record')")
        wait_until(lambda: seen() == 2)  # the worker reconnected by itself
        assert worker.poll() is None, "the worker exited"
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert "Traceback" not in output, output
