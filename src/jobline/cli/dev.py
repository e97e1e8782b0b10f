"""`jobline dev`: everything in one process for a laptop: a worker (with the scheduler and
maintenance), the HTTP API and the dashboard, on the embedded database (or the configured one).
It prints the dashboard's address and a one-time sign-in link, to this terminal only."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from ..auth import SERVICE
from .main import Context, cli, pass_context

log = logging.getLogger(__name__)

LINK_SECONDS = 120


@cli.command("dev")
@click.option("--host", envvar="JOBLINE_HOST", show_envvar=True, default="127.0.0.1", show_default=True,
              help="Address the API and dashboard listen on.")
@click.option("--port", envvar="JOBLINE_PORT", show_envvar=True, type=click.IntRange(0, 65535), default=8000,
              show_default=True, help="Port to listen on (0: any free port).")
@pass_context
def dev(ctx: Context, host: str, port: int) -> None:
    """Run a worker, the scheduler, the API and the dashboard in this process until Ctrl-C.

    Prints the dashboard's address with a one-time sign-in link (valid once, for two minutes):
    open it to watch your jobs. Sign in later with JOBLINE_SERVICE_KEY, a user's API token or
    JWT, or run `jobline dev` again for a new link.
    """
    import uvicorn

    from ..api import create_app, uvicorn_options
    from ..db import connect
    from .serve import _listen

    app = ctx.load_app()
    connect.ready_database_url(app.settings)  # starts and migrates the embedded database if it is the one
    listening = _listen(host, port)
    # The worker does the maintenance; the server's streams end within a second of a stop.
    config = uvicorn.Config(create_app(app, maintenance=False), host=host, port=port,
                            **{**uvicorn_options(app.settings), "timeout_graceful_shutdown": 1})
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # ours below stop the server and the worker together

    async def run() -> None:
        served = asyncio.create_task(server.serve(sockets=[listening]))
        while not server.started:
            if served.done():
                await served
                raise SystemExit(1)
            await asyncio.sleep(0.02)
        worker = await app.worker_async()
        working = asyncio.create_task(worker.run(handle_signals=False))

        def stop() -> None:
            worker.request_stop()  # the worker first: the server's shutdown closes the App's pool

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        token = await app.ops.sessions.create_link(SERVICE, LINK_SECONDS)
        bound = listening.getsockname()
        address = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{bound[1]}"
        functions = ", ".join(f.name for f in app.registry) or "only the built-ins"
        click.echo(f"\njobline dev: a worker ({functions}), the scheduler, the API and the dashboard.\n"
                   f"  Dashboard:  {address}/\n"
                   f"  Sign in:    {address}/sign-in/link?token={token}\n"
                   f"              (once, within {LINK_SECONDS // 60} minutes; then sign in with the service key,\n"
                   f"               or run `jobline dev` again)\n"
                   f"  API:        {address}/api/  (docs/reference/http.md)\n"
                   f"Ctrl-C stops everything.\n", err=False)
        await asyncio.wait({served, working}, return_when=asyncio.FIRST_COMPLETED)
        stop()
        await asyncio.gather(working, return_exceptions=True)
        server.should_exit = True
        await asyncio.gather(served, return_exceptions=True)

    asyncio.run(run())
