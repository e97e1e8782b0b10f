"""`jobline worker`, `jobline process` and `jobline demo`."""

from __future__ import annotations

import asyncio
import dataclasses

import click
from click.core import ParameterSource

from .main import Context, cli, pass_context
from .output import emit_json, table


def _worker_options(function):
    function = click.option("--concurrency", type=click.IntRange(1, 10_000), envvar="JOBLINE_CONCURRENCY",
                            help="Jobs run at once (default 10).")(function)
    function = click.option("--queue", "queues", multiple=True, help="Only these queues (repeatable; default all).")(function)
    function = click.option("--batch-size", type=click.IntRange(1, 10_000),
                            help="Most jobs claimed per query (default: half of --concurrency).")(function)
    return function


@cli.command("worker")
@_worker_options
@click.option("--grace", type=click.FloatRange(0, 86400), default=30.0, show_default=True,
              help="Seconds running jobs get to finish after SIGTERM/SIGINT.")
@click.option("--lease", type=click.FloatRange(1, 86400), envvar="JOBLINE_LEASE_SECONDS",
              help="Seconds a claim is trusted without a heartbeat (default 30).")
@click.option("--scheduler/--no-scheduler", default=True, show_default=True,
              help="Also turn cron ticks into jobs (safe in every worker: each tick fires once).")
@click.option("--remote", metavar="URL", help="Work over HTTP through the jobline server at URL, without a "
              "database (falls back to --database-url if given and the server is unreachable).")
@click.option("--token", envvar="JOBLINE_TOKEN", show_envvar=True,
              help="With --remote: the bearer token (service key, user JWT or API token).")
@click.option("--metrics-port", envvar="JOBLINE_METRICS_PORT", show_envvar=True, type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (default: none).")
@click.option("--metrics-host", envvar="JOBLINE_METRICS_HOST", show_envvar=True, default="127.0.0.1",
              show_default=True, help="Address the metrics listen on (0.0.0.0: every interface).")
@pass_context
def worker(ctx: Context, concurrency, queues, batch_size, grace, lease, scheduler, remote, token,
           metrics_port, metrics_host) -> None:
    """Claim and run jobs of the app's functions until stopped (SIGTERM/SIGINT); also runs the
    scheduler unless --no-scheduler. With --remote URL, claim them over HTTP instead."""
    if remote:
        if metrics_port is not None:
            raise click.UsageError("--metrics-port cannot be used with --remote: a remote worker serves no metrics; "
                                   "scrape /metrics of the `jobline serve` it works through")
        _remote_worker(ctx, remote, token, concurrency, grace, queue=queues, batch_size=batch_size)
        return
    if token and click.get_current_context().get_parameter_source("token") == ParameterSource.COMMANDLINE:
        raise click.UsageError("--token goes with --remote URL (a worker with a database needs no token)")
    if lease:
        ctx.settings = dataclasses.replace(ctx.settings, lease_seconds=lease)
    app = ctx.load_app()
    listening = None
    if metrics_port is not None:
        from .serve import _listen

        # Bound before the worker starts: a taken port is one line and exit status 1.
        listening = _listen(metrics_host, metrics_port, taken="is another worker using this --metrics-port? "
                            "choose another one per worker on a machine")
        listening.listen()  # now, not when the server starts: a second worker's bind then fails

    async def go():
        async with app:
            w = await app.worker_async(concurrency=concurrency, queues=list(queues) or None,
                                       batch_size=batch_size, grace_seconds=grace, scheduler=scheduler,
                                       metrics_socket=listening)
            await w.run()

    asyncio.run(go())


def _remote_worker(ctx: Context, url: str, token: str | None, concurrency: int | None, grace: float, **refused) -> None:
    """`jobline worker --remote`: the App's functions, claimed and reported over HTTP (client/)."""
    from ..client.client import Client
    from ..client.remote_worker import RemoteWorker

    source = click.get_current_context().get_parameter_source
    given = [f"--{name.replace('_', '-')}" for name, value in refused.items() if value]
    given += [f"--{name}" for name in ("lease", "scheduler") if source(name) == ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)} cannot be used with --remote: the server picks tasks for any "
                               "queue, sets their lease (JOBLINE_REMOTE_LEASE_SECONDS), and runs no schedules")
    if not token:
        raise click.UsageError("--remote needs --token TOKEN (or JOBLINE_TOKEN): the service key, a user JWT or "
                               "an API token from `jobline tokens create`")
    settings = ctx.settings
    app = ctx.load_app()

    async def go():
        client = Client(url, token, settings.database_url, settings=settings)
        try:
            worker = RemoteWorker(client, app.registry, concurrency=concurrency or settings.concurrency or app.registry.default_concurrency(),
                                  grace_seconds=grace)
            await worker.run()
        finally:
            await client.close_async()
            await app.close_async()

    asyncio.run(go())


@cli.command("scheduler")
@pass_context
def scheduler(ctx: Context) -> None:
    """Only turn cron ticks into jobs (no job runs here) until stopped (SIGTERM/SIGINT). Any
    number may run: each tick creates exactly one job."""
    app = ctx.load_app()

    async def go():
        async with app:
            w = await app.worker_async(jobs=False, maintenance=False)
            await w.run()

    asyncio.run(go())


@cli.command("process")
@_worker_options
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_context
def process(ctx: Context, concurrency, queues, batch_size, limit, as_json) -> None:
    """Run the due jobs this process can run (and those that become due meanwhile) until none
    remain, then print a summary. Exit status 0 unless jobline itself failed."""
    app = ctx.load_app()

    async def go():
        async with app:
            return await app.process_async(limit, concurrency=concurrency, queues=list(queues) or None,
                                           batch_size=batch_size)

    summary = asyncio.run(go()).to_dict()
    if as_json:
        emit_json(summary)
        return
    click.echo(f"processed {summary['processed']}: {summary['succeeded']} succeeded, {summary['retried']} "
               f"will retry, {summary['failed']} failed, {summary['cancelled']} cancelled")
    rows = [{"function": f, **counts} for f, counts in summary["by_function"].items()]
    if rows:
        table(rows, ["function", "succeeded", "retried", "failed", "cancelled"])


@cli.command("demo")
@pass_context
def demo(ctx: Context) -> None:
    """Run a sample app (token reset, AI batch, streaks, cleanup) on demo tables: jobs succeed, retry, fail and wait on each other."""
    from .. import demo as demo_module

    asyncio.run(demo_module.run(ctx.settings))
