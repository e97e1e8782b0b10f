"""`jobline serve`: the HTTP API under uvicorn, in this process or in ``--workers`` processes
sharing one listening socket."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket

import click

from ..errors import JoblineError
from ..settings import Settings
from .main import Context, cli, pass_context

log = logging.getLogger(__name__)


@cli.command("serve")
@click.option("--host", envvar="JOBLINE_HOST", show_envvar=True, default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", envvar="JOBLINE_PORT", show_envvar=True, type=click.IntRange(0, 65535), default=8000,
              show_default=True, help="Port to listen on.")
@click.option("--workers", envvar="JOBLINE_SERVE_WORKERS", show_envvar=True, type=click.IntRange(1, 64), default=1,
              show_default=True, help="Server processes answering on the one port (about one per core).")
@pass_context
def serve(ctx: Context, host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (docs/reference/http.md) for the app's functions until SIGTERM/SIGINT.

    Also rescues expired leases (remote workers' included) and prunes old jobs, so a deployment
    whose only workers are remote needs nothing else. Credentials: JOBLINE_SERVICE_KEY,
    JOBLINE_JWT_SECRET, JOBLINE_RUNNER_SECRET and API tokens (`jobline tokens create`).

    With --workers N, N processes accept on the same socket; each has its own pool, rate
    limiter, /metrics counts and maintenance role.
    """
    import uvicorn  # only this command needs the server

    from ..api import create_app, uvicorn_options

    from ..db import connect

    app = ctx.load_app()
    # Fail here, in one line, if the database is unreachable or not migrated (the server would
    # otherwise report it as a crash of its startup).
    url = connect.ready_database_url(app.settings)
    _uvicorn_logs()
    if os.environ.get("FORWARDED_ALLOW_IPS") and not app.settings.forwarded_allow_ips:
        log.warning("api.forwarded_ignored", extra={"reason": "FORWARDED_ALLOW_IPS is not read: X-Forwarded-For is "
                                                              "believed only from JOBLINE_FORWARDED_ALLOW_IPS"})
    if workers > 1:
        _serve_processes(app.settings, url, host, port, workers)
        return
    config = uvicorn.Config(create_app(app), host=host, port=port, **uvicorn_options(app.settings))
    server = uvicorn.Server(config)
    listening = _listen(host, port)  # before the server starts: a taken port is one line, exit 1
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler
    # it found: a no-op one makes a requested stop exit 0, as `jobline worker` does.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    log.info("api.listening", extra={"host": host, "port": listening.getsockname()[1]})
    server.run(sockets=[listening])
    if not server.started:  # e.g. the database is unreachable or the port is taken: logged above
        raise SystemExit(1)


def _serve_processes(settings: Settings, database_url: str, host: str, port: int, workers: int) -> None:
    """Serve with uvicorn's supervisor: ``workers`` spawned processes on one socket bound here.

    uvicorn can only build the app in each process from an import string, so the children build
    it with :func:`app_from_env` from the same global options, passed as their JOBLINE_*
    variables (the children inherit this environment; the options win over what it held). The
    database URL is the one resolved here, so the children never start an embedded database.
    """
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    from ..api import uvicorn_options

    options = click.get_current_context().find_root().params
    for name, value in (("JOBLINE_APP", options.get("app_spec")), ("JOBLINE_DATABASE_URL", database_url),
                        ("JOBLINE_DATA_DIR", options.get("data_dir")),
                        ("JOBLINE_LOG_FORMAT", options.get("log_format")),
                        ("JOBLINE_LOG_LEVEL", options.get("log_level"))):
        if value is not None:
            os.environ[name] = value
    config = uvicorn.Config(f"{__name__}:app_from_env", factory=True, host=host, port=port, workers=workers,
                            **uvicorn_options(settings))
    listening = _listen(host, port)
    log.info("api.listening", extra={"host": host, "port": listening.getsockname()[1], "workers": workers})
    supervisor = Multiprocess(config, sockets=[listening])
    supervisor.run()  # until SIGTERM/SIGINT, which it passes on to the processes
    if any(p.process.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(1)


def app_from_env():
    """The API of one `jobline serve --workers N` process (uvicorn's factory, run in each child):
    the App of JOBLINE_APP with the settings of the JOBLINE_* variables the parent set."""
    from ..api import create_app
    from .output import setup_logging

    setup_logging(os.environ.get("JOBLINE_LOG_FORMAT", "text"), os.environ.get("JOBLINE_LOG_LEVEL", "info"))
    _uvicorn_logs()
    context = Context(app_spec=os.environ.get("JOBLINE_APP") or None)
    context.settings = Settings.from_env()
    return create_app(context.load_app())


def _uvicorn_logs() -> None:
    """uvicorn's own lines (listening, bind errors) go through jobline's log setup (--log-format)."""
    ours, theirs = logging.getLogger("jobline"), logging.getLogger("uvicorn")
    theirs.handlers[:], theirs.propagate = list(ours.handlers), False
    theirs.setLevel(ours.level)


def _listen(host: str, port: int, *, taken: str = "is another `jobline serve` running? choose another --port"
            ) -> socket.socket:
    """A socket bound to ``host``:``port``, as uvicorn would bind it; JoblineError in one line
    when it cannot be (the port is taken: ``taken`` says what to do; the address is not this
    machine's). `jobline worker --metrics-port` binds its socket here too."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                            flags=socket.AI_PASSIVE)[0]
        listening = socket.socket(family, kind, proto)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
    except OSError as exc:
        hint = f" ({taken})" if exc.errno == errno.EADDRINUSE else ""
        raise JoblineError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    listening.set_inheritable(True)
    return listening
