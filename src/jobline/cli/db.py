"""`jobline db migrate|status|url|stop`."""

from __future__ import annotations

import click

from ..db import connect, migrate
from .main import Context, cli, pass_context
from .output import emit_json, table


@cli.group("db")
def db_group() -> None:
    """Install and inspect the jobline schema; stop the embedded database."""


@db_group.command("migrate")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def db_migrate(ctx: Context, as_json: bool) -> None:
    """Apply pending migrations (safe to run from many processes at once)."""
    applied = migrate.migrate(connect.database_url(ctx.settings))
    if as_json:
        emit_json({"applied": [{"version": m.version, "name": m.name} for m in applied]})
    elif applied:
        for m in applied:
            click.echo(f"applied {m.version:04d}_{m.name}")
    else:
        click.echo("schema is up to date")


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def db_status(ctx: Context, as_json: bool) -> None:
    """Show the database's URL (password hidden) and its applied and pending migrations."""
    url = connect.database_url(ctx.settings)
    rows = [m.to_dict() for m in migrate.status(url)]
    if as_json:
        emit_json(rows)
    else:
        click.echo(f"database: {connect.shown_url(url)}" + ("" if ctx.settings.database_url else " (embedded)"))
        table(rows, ["version", "name", "state", "applied_at"])


@db_group.command("url")
@click.option("--show-password", is_flag=True, help="Print JOBLINE_DATABASE_URL's password too.")
@pass_context
def db_url(ctx: Context, show_password: bool) -> None:
    """Print the database's URL, for psql or your own code: the embedded database's (started if
    needed), or JOBLINE_DATABASE_URL with its password hidden unless --show-password.

    \b
    psql "$(jobline db url)"
    """
    url = connect.database_url(ctx.settings)
    click.echo(url if show_password else connect.shown_url(url))


@db_group.command("stop")
@pass_context
def db_stop(ctx: Context) -> None:
    """Stop the embedded PostgreSQL (it keeps running between commands until then)."""
    from ..db.embedded import EmbeddedPostgres, default_data_dir

    if ctx.settings.database_url:
        raise click.UsageError("JOBLINE_DATABASE_URL is set: jobline does not manage that server")
    server = EmbeddedPostgres(ctx.settings.data_dir or default_data_dir())
    click.echo("stopped the embedded database" if server.stop() else "the embedded database was not running")
