"""`jobline serve`: the HTTP API under uvicorn, in this process."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket

import click

from ..errors import JoblineError
from .main import Context, cli, pass_context

log = logging.getLogger(__name__)


@cli.command("serve")
@click.option("--host", envvar="JOBLINE_HOST", show_envvar=True, default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", envvar="JOBLINE_PORT", show_envvar=True, type=click.IntRange(0, 65535), default=8000,
              show_default=True, help="Port to listen on.")
@pass_context
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the HTTP API (docs/reference/http.md) for the app's functions until SIGTERM/SIGINT.

    Also rescues expired leases (remote workers' included) and prunes old jobs, so a deployment
    whose only workers are remote needs nothing else. Credentials: JOBLINE_SERVICE_KEY,
    JOBLINE_JWT_SECRET, JOBLINE_RUNNER_SECRET and API tokens (`jobline tokens create`).
    """
    import uvicorn  # only this command needs the server

    from ..api import create_app, uvicorn_options

    from ..db import connect

    app = ctx.load_app()
    # Fail here, in one line, if the database is unreachable or not migrated (the server would
    # otherwise report it as a crash of its startup).
    connect.ready_database_url(app.settings)
    # uvicorn's own lines (listening, bind errors) go through jobline's log setup (--log-format).
    ours, theirs = logging.getLogger("jobline"), logging.getLogger("uvicorn")
    theirs.handlers[:], theirs.propagate = list(ours.handlers), False
    theirs.setLevel(ours.level)
    if os.environ.get("FORWARDED_ALLOW_IPS") and not app.settings.forwarded_allow_ips:
        log.warning("api.forwarded_ignored", extra={"reason": "FORWARDED_ALLOW_IPS is not read: X-Forwarded-For is "
                                                              "believed only from JOBLINE_FORWARDED_ALLOW_IPS"})
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
