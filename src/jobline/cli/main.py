"""The `jobline` command: global options, app loading, and error reporting.

Every global option may also come from its JOBLINE_<OPTION> variable. Errors reach the user
as one line naming what was wrong, never as a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys

import click

from ..app import App
from ..errors import ConfigError, InvalidInput, JoblineError, NotFound
from ..settings import Settings
from .output import setup_logging


@dataclasses.dataclass
class Context:
    app_spec: str | None
    _settings: Settings | None = None
    # A bad JOBLINE_* setting fails the commands that use settings, not those that need none
    # (`secrets generate-key` must work while JOBLINE_MASTER_KEY is being fixed).
    settings_error: ConfigError | None = None

    @property
    def settings(self) -> Settings:
        if self.settings_error is not None:
            raise self.settings_error
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings

    def load_app(self) -> App:
        """The user's App (``--app module:attr``), or a plain one with only the built-ins."""
        if not self.app_spec:
            return App(settings=self.settings)
        module_name, _, attribute = self.app_spec.partition(":")
        if not module_name or not attribute:
            raise ConfigError(f"--app must look like 'package.module:app', got {self.app_spec!r}")
        sys.path.insert(0, ".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {module_name!r} (from --app {self.app_spec}): {exc}") from exc
        app = getattr(module, attribute, None)
        if not isinstance(app, App):
            raise ConfigError(f"{self.app_spec!r} is not a jobline App (found {type(app).__name__})")
        app.settings = self.settings  # the command line and environment decide where to connect
        return app


pass_context = click.make_pass_decorator(Context)


def run_app(app: App, work):
    """Open ``app``, run ``work(app)`` (a coroutine function) on an event loop, close it."""

    async def go():
        async with app:
            return await work(app)

    return asyncio.run(go())


def run_ops(app: App, work):
    """:func:`run_app` for one operation: ``work(ops)`` on the operations layer. The CLI acts as
    the service (the operator at the machine), so commands pass ``SERVICE`` as the caller."""
    return run_app(app, lambda app: work(app.ops))


class JoblineGroup(click.Group):
    """Turns jobline errors into one readable line and an exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            _fail(exc, 2)
        except NotFound as exc:
            _fail(exc, 3)
        except JoblineError as exc:
            _fail(exc, 1)
        except KeyboardInterrupt:
            sys.exit(130)


def _fail(exc: JoblineError, status: int) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(status)


@click.group(cls=JoblineGroup, context_settings={"auto_envvar_prefix": "JOBLINE", "help_option_names": ["-h", "--help"]})
@click.option("--database-url", envvar="JOBLINE_DATABASE_URL", show_envvar=True, help="PostgreSQL URL (default: the embedded database).")
@click.option("--data-dir", envvar="JOBLINE_DATA_DIR", show_envvar=True, help="Where the embedded database lives.")
@click.option("--app", "app_spec", envvar="JOBLINE_APP", show_envvar=True, help="Your functions: 'module:attribute' of a jobline App.")
@click.option("--log-format", envvar="JOBLINE_LOG_FORMAT", show_envvar=True, type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--log-level", envvar="JOBLINE_LOG_LEVEL", show_envvar=True, default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.version_option(package_name="jobline")
@click.pass_context
def cli(ctx: click.Context, database_url, data_dir, app_spec, log_format, log_level) -> None:
    """jobline: a PostgreSQL-native job queue, scheduler and function runner.

    Without --database-url / JOBLINE_DATABASE_URL every command uses an embedded PostgreSQL
    kept in --data-dir (started on first use, stopped by `jobline db stop`).
    """
    setup_logging(log_format, log_level)
    ctx.obj = Context(app_spec=app_spec)
    try:
        ctx.obj.settings = Settings.from_env(database_url=database_url, data_dir=data_dir, log_format=log_format)
    except ConfigError as exc:
        ctx.obj.settings_error = exc


def main() -> None:
    from . import cron, db, dev, jobs, limits, notifications, pipelines, queues, run, secrets, serve, tokens  # noqa: F401  (they register their commands on `cli`)

    # Not click's standalone mode, whose usage errors take four lines: ours are one, as every
    # other error is (exit 2: invalid input).
    try:
        status = cli.main(prog_name="jobline", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # `jobline cron` alone: its help, as asked
        click.echo(exc.ctx.get_help())
        status = 0
    except click.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"error: {exc.format_message().rstrip('.')}{hint}", err=True)
        status = 2
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        status = exc.exit_code
    except click.Abort:  # Ctrl-C at a prompt
        status = 130
    sys.exit(status or 0)
