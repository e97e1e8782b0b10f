"""The embedded PostgreSQL, with real servers and processes (each test has its own data dir)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import psycopg
import pytest

from jobline.db.embedded import EmbeddedPostgres
from jobline.errors import ConfigError


@pytest.fixture
def data_dir():
    parent = tempfile.mkdtemp(prefix="jobline-embedded-")
    os.chmod(parent, 0o755)
    path = os.path.join(parent, "data")
    yield path
    EmbeddedPostgres(path).stop()
    subprocess.run(["rm", "-rf", parent], check=False)


def wait_until(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_cold_start_gives_a_working_database_with_listen_notify(data_dir):
    url = EmbeddedPostgres(data_dir).ensure_running()
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as sender:
        listener.execute("LISTEN ping")
        sender.execute("SELECT pg_notify('ping', 'hello')")
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == ["hello"]
        assert listener.execute("SHOW fsync").fetchone()[0] == "on"


def test_second_instance_attaches_without_restarting(data_dir):
    first = EmbeddedPostgres(data_dir)
    url = first.ensure_running()
    pid = first.status()["pid"]
    assert EmbeddedPostgres(data_dir).ensure_running() == url
    assert EmbeddedPostgres(data_dir).status() == {**first.status(), "pid": pid}


def test_stop_then_start_again_keeps_the_data(data_dir):
    server = EmbeddedPostgres(data_dir)
    with psycopg.connect(server.ensure_running(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    assert server.stop() is True
    assert server.status()["running"] is False
    assert server.stop() is False
    with psycopg.connect(server.ensure_running()) as conn:
        conn.execute("SELECT * FROM kept")


def test_restart_after_kill_9_with_a_stale_pid_file(data_dir):
    server = EmbeddedPostgres(data_dir)
    server.ensure_running()
    os.kill(server.status()["pid"], signal.SIGKILL)
    wait_until(lambda: not server.status()["running"])
    with psycopg.connect(server.ensure_running()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_processes_starting_at_once_share_one_server(data_dir):
    code = "import sys; from jobline.db.embedded import EmbeddedPostgres; print(EmbeddedPostgres(sys.argv[1]).ensure_running())"
    starters = [subprocess.Popen([sys.executable, "-c", code, data_dir], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=90) for p in starters]
    assert all(p.returncode == 0 for p in starters), [err for _, err in results]
    urls = {out.strip() for out, _ in results}
    assert len(urls) == 1
    with psycopg.connect(urls.pop()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")
def test_data_dir_the_server_user_cannot_reach_is_refused_with_advice():
    closed = tempfile.mkdtemp(prefix="jobline-closed-")  # mode 700, owned by root
    try:
        with pytest.raises(ConfigError, match="JOBLINE_DATA_DIR"):
            EmbeddedPostgres(os.path.join(closed, "data")).ensure_running()
        assert oct(os.stat(closed).st_mode & 0o777) == "0o700"  # not opened up
    finally:
        subprocess.run(["rm", "-rf", closed], check=False)
