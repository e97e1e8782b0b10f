"""A real PgBouncer in transaction mode in front of the test PostgreSQL (Debian's `pgbouncer`).

Started on a free port with its ini and auth file in a temporary directory; as root it runs as
`nobody` (`-u`), since pgbouncer refuses to run as root. Without the binary the tests that need
it skip, saying how to install it; where JOBLINE_REQUIRE_PGBOUNCER is set (.ci/run sets it) they
fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def pgbouncer_path() -> str:
    path = shutil.which("pgbouncer") or next((p for p in ("/usr/sbin/pgbouncer",) if os.path.exists(p)), None)
    if path is None:
        message = "the pooler tests need Debian's pgbouncer: `apt-get install -y pgbouncer`"
        if os.environ.get("JOBLINE_REQUIRE_PGBOUNCER"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgBouncer:
    """``pool_mode = transaction`` in front of ``server_url``'s host and port, trust auth."""

    def __init__(self, server_url: str):
        self.binary = pgbouncer_path()
        server = conninfo_to_dict(server_url)
        self.server = server
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="jobline-pgbouncer-")
        os.chmod(self.dir, 0o755)  # as root, pgbouncer runs as `nobody`, which must read its files
        self.ini = os.path.join(self.dir, "pgbouncer.ini")
        self.log = os.path.join(self.dir, "pgbouncer.log")
        user = server.get("user", "postgres")
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            f.write(f'"{user}" ""\n')
        with open(self.ini, "w") as f:
            f.write(f"""[databases]
* = host={server.get("host", "127.0.0.1")} port={server.get("port", 5432)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
""")
        for name in ("userlist.txt", "pgbouncer.ini"):
            os.chmod(os.path.join(self.dir, name), 0o644)
        self.process: subprocess.Popen | None = None

    def url(self, direct_url: str) -> str:
        """``direct_url`` (same user and database) through the pooler."""
        params = conninfo_to_dict(direct_url)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo(**params)

    def start(self) -> None:
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        log = open(self.log, "a")  # opened here: as `nobody` it could not create it
        self.process = subprocess.Popen([self.binary, *user, self.ini], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(self.url(make_conninfo(**{**self.server, "dbname": "postgres"})),
                                     connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start: {self.output()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: immediate shutdown, every client is cut off
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        with open(self.log) as f:
            return f.read()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
