"""Settings read from the environment (``JOBLINE_*``), validated once with clear messages.

The CLI passes its options through the same fields, so a flag and its variable behave alike.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Mapping

from .egress import Policy
from .errors import ConfigError

# The kept part of an HTTP response body is stored in the job's result (at most 1 MiB as JSON);
# 128 KiB stays under that even if every byte needs a 6-character JSON escape.
MAX_HTTP_BODY_BYTES = 128 * 1024


MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its digest (RFC 7518 3.2)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None   # None: use the embedded PostgreSQL in data_dir
    # The notification listener's own connection (LISTEN needs a session of its own): a direct
    # one when database_url goes through a transaction-mode pooler. None: database_url.
    listen_database_url: str | None = None
    data_dir: str | None = None       # None: the embedded module's default
    app: str | None = None            # "module:attribute" of the user's App
    # Jobs a worker runs at once; None: by its handlers' kind (Registry.default_concurrency).
    concurrency: int | None = None
    lease_seconds: float = 30.0       # how long a claim is trusted without a heartbeat
    poll_interval: float = 1.0        # fallback poll when no notification arrives
    log_format: str = "text"
    # Whether a worker's claims and outcomes wait for the WAL flush. Off by default: a server
    # crash can then only lose such a write, which makes a job run again (at-least-once);
    # enqueues are always durable.
    worker_synchronous_commit: bool = False
    # Off behind a transaction-mode pooler (PgBouncer, Supavisor): see docs/howto/deploy.md.
    prepared_statements: bool = True
    # How long a caller waits for a database connection (from a pool of jobline's, or a
    # handler's ctx.connect() slot) before failing with DatabaseError: all are in use, or the
    # database is unreachable. A role that fails this way retries; a request answers 503.
    pool_timeout: float = 30.0
    # Connections a process's handlers may hold at once through ctx.connect() and
    # ctx.connect_async(); one more waits up to pool_timeout for another to close.
    handler_connections: int = 10
    # Retention of finished jobs, per final state (failures are kept longer to debug them).
    retain_succeeded_seconds: float = 7 * 86400
    retain_failed_seconds: float = 30 * 86400
    retain_cancelled_seconds: float = 30 * 86400
    # The operators' function.failing alert: this many final failures of one function within
    # this many seconds (0020_notifications.sql's alert_settings has the same defaults; the
    # processes that run maintenance write these there).
    alert_failures: int = 5
    alert_window: float = 600.0
    # Outbound HTTP (the `http` function; egress.py has the policy): hosts and networks that may
    # be reached although the policy refuses them, e.g. "127.0.0.0/8,api.internal"; whether
    # private ranges (RFC 1918, fc00::/7, 100.64/10) may be reached; the redirect hops followed;
    # and how much of a response body is read and kept.
    http_allow: str | None = None
    http_allow_private: bool = False
    http_max_redirects: int = 5
    http_max_body_bytes: int = 65536
    # The vault's key (or "NEW,OLD" during a rotation), see vault.py. Never printed, and never
    # sent to the database.
    master_key: str | None = dataclasses.field(default=None, repr=False)
    # The HTTP API's credentials (auth.py): full access; the HS256 secret of user JWTs; the
    # shared secret of POST /api/jobs/run. Never printed.
    service_key: str | None = dataclasses.field(default=None, repr=False)
    jwt_secret: str | None = dataclasses.field(default=None, repr=False)
    runner_secret: str | None = dataclasses.field(default=None, repr=False)
    # How long a remote worker's claim is trusted without a heartbeat.
    remote_lease_seconds: float = 300.0
    # The reverse proxies in front of `jobline serve`: IP addresses and networks whose
    # X-Forwarded-For (and -Proto) is believed, e.g. "10.0.0.0/8". None: no proxy, the headers are
    # ignored and the client is the connection's peer (see forwarded_proxies).
    forwarded_allow_ips: str | None = None
    # The dashboard (at / of `jobline serve`): read-only for viewers (no action is offered, and
    # every action is refused), and how long a sign-in lasts.
    dashboard_read_only: bool = False
    dashboard_session_seconds: float = 8 * 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values: dict = {}
        for field in dataclasses.fields(cls):
            raw = env.get(f"JOBLINE_{field.name.upper()}")
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(field.name, raw, field.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.database_url is not None:
            check_database_url(self.database_url)
        if self.listen_database_url is not None:
            check_database_url(self.listen_database_url, "JOBLINE_LISTEN_DATABASE_URL")
        if self.concurrency is not None and not 1 <= self.concurrency <= 10_000:
            raise ConfigError(f"concurrency must be between 1 and 10000, got {self.concurrency}")
        if not 1 <= self.lease_seconds <= 86400:
            raise ConfigError(f"JOBLINE_LEASE_SECONDS must be between 1 and 86400, got {self.lease_seconds}")
        if not 0.01 <= self.poll_interval <= 3600:
            raise ConfigError(f"JOBLINE_POLL_INTERVAL must be between 0.01 and 3600 seconds, got {self.poll_interval}")
        if not 0.1 <= self.pool_timeout <= 3600:
            raise ConfigError(f"JOBLINE_POOL_TIMEOUT must be between 0.1 and 3600 seconds, got {self.pool_timeout}")
        if not 1 <= self.handler_connections <= 1000:
            raise ConfigError(f"JOBLINE_HANDLER_CONNECTIONS must be between 1 and 1000, got {self.handler_connections}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log format must be 'text' or 'json', got {self.log_format!r}")
        for name in ("retain_succeeded_seconds", "retain_failed_seconds", "retain_cancelled_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"JOBLINE_{name.upper()} must not be negative")
        if not 1 <= self.alert_failures <= 100_000:
            raise ConfigError(f"JOBLINE_ALERT_FAILURES must be between 1 and 100000, got {self.alert_failures}")
        if not 1 <= self.alert_window <= 30 * 86400:
            raise ConfigError(f"JOBLINE_ALERT_WINDOW must be between 1 and 2592000 seconds (30 days), got "
                              f"{self.alert_window}")
        if self.http_allow:
            Policy.parse(self.http_allow)  # ConfigError naming a malformed entry
        if not 0 <= self.http_max_redirects <= 20:
            raise ConfigError(f"JOBLINE_HTTP_MAX_REDIRECTS must be between 0 and 20, got {self.http_max_redirects}")
        if not 0 <= self.http_max_body_bytes <= MAX_HTTP_BODY_BYTES:
            raise ConfigError(f"JOBLINE_HTTP_MAX_BODY_BYTES must be between 0 and {MAX_HTTP_BODY_BYTES} (128 KiB: "
                              f"the body is kept in the job's result), got {self.http_max_body_bytes}")
        for name in ("service_key", "jwt_secret", "runner_secret"):
            value = getattr(self, name)
            if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
                raise ConfigError(f"JOBLINE_{name.upper()} is shorter than {MIN_SECRET_BYTES} bytes: use a long random "
                                  "value, such as the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if not 10 <= self.remote_lease_seconds <= 86400:
            raise ConfigError(f"JOBLINE_REMOTE_LEASE_SECONDS must be between 10 and 86400, got {self.remote_lease_seconds}")
        if not 60 <= self.dashboard_session_seconds <= 30 * 86400:
            raise ConfigError("JOBLINE_DASHBOARD_SESSION_SECONDS must be between 60 and 2592000 (30 days), got "
                              f"{self.dashboard_session_seconds}")
        if self.forwarded_allow_ips is not None:
            forwarded_proxies(self.forwarded_allow_ips)
        if self.master_key is not None:
            from .vault import MasterKeys  # only when set: it loads the cryptography package

            MasterKeys.parse(self.master_key)


def check_database_url(url: str, what: str = "JOBLINE_DATABASE_URL (or --database-url)") -> None:
    """ConfigError when the URL (``what`` names its setting) cannot be a PostgreSQL address:
    malformed, or with a host or port no server can have. The message never quotes the URL,
    which may hold a password.

    >>> check_database_url("postgresql://app:s3cret@db.internal:5432/jobs")
    """
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict  # parsing only (libpq's), no connection

    form = "write it as postgresql://USER:PASSWORD@HOST:5432/DBNAME, with special characters percent-encoded"
    try:
        params = conninfo_to_dict(url)
    except ProgrammingError:
        raise ConfigError(f"{what} is malformed: it is neither a postgresql:// URL nor a 'key=value' "
                          f"connection string; {form}") from None
    for host in (params.get("host") or "").split(","):
        if host and not host.startswith("/") and not _HOST.fullmatch(host):
            raise ConfigError(f"{what} is malformed: its host {host!r} is not a host name or address "
                              f"(an '@' or ':' in the password must be written %40 or %3A); {form}")
    for port in (params.get("port") or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"{what} is malformed: its port must be a number from 1 to 65535; {form}")


_HOST = re.compile(r"[A-Za-z0-9._\-]+|\[?[0-9A-Fa-f:.%]+\]?")


def forwarded_proxies(value: str) -> list[str]:
    """The entries of JOBLINE_FORWARDED_ALLOW_IPS, each an IP address or network, as uvicorn's
    ``forwarded_allow_ips`` takes them; ConfigError naming the variable and the bad entry.

    ``*`` (every peer) is refused: the limit on failed authentications counts per client
    address, and with every peer trusted any client could name its own.

    >>> forwarded_proxies("10.0.0.0/8, 192.0.2.7")
    ['10.0.0.0/8', '192.0.2.7']
    """
    entries = [entry.strip() for entry in value.split(",")]
    for entry in entries:
        if entry == "*":
            raise ConfigError("JOBLINE_FORWARDED_ALLOW_IPS: '*' would trust X-Forwarded-For from any peer, so any "
                              "client could choose the address it is counted under: list the addresses or networks "
                              "of your reverse proxies instead (such as 10.0.0.0/8)")
        try:
            ipaddress.ip_network(entry)  # an address is a network of one
        except ValueError as exc:
            raise ConfigError(f"JOBLINE_FORWARDED_ALLOW_IPS must list IP addresses or networks (such as "
                              f"10.0.0.0/8,192.0.2.7), got {entry!r}: {exc}") from None
    return entries


def _convert(name: str, raw: str, type_: str):
    variable = f"JOBLINE_{name.upper()}"
    type_ = type_.removesuffix(" | None")
    if type_ == "bool":
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "on", "yes"):
            return True
        if lowered in ("0", "false", "off", "no"):
            return False
        raise ConfigError(f"{variable} must be on or off, got {raw!r}")
    try:
        if type_ == "int":
            return int(raw)
        if type_ == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{variable} must be a number, got {raw!r}") from None
    return raw
