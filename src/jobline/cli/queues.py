"""`jobline queues ls|pause|resume`: queue depth and throughput, and pausing a queue."""

from __future__ import annotations

import click

from ..auth import SERVICE
from ..job import MAX_QUEUE_LENGTH, check_name
from ..operations.queues import MAX_REASON_LENGTH
from .main import Context, cli, pass_context, run_ops
from .output import emit_json, short_time, table


@cli.group("queues")
def queues_group() -> None:
    """Queues: how deep they are, and pausing one (its jobs wait; `jobs run ID` still runs one)."""


@queues_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def queues_ls(ctx: Context, as_json: bool) -> None:
    """Each queue: jobs waiting, pending, due and running, finished in the last hour, paused or not."""
    rows = run_ops(ctx.load_app(), lambda ops: ops.queues.list(SERVICE))
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["state"] = f"paused since {short_time(row['paused_at'])}" if row["paused"] else "active"
        row["failed_1h"], row["succeeded_1h"] = row["failed"], row["succeeded"]
    table(rows, ["queue", "state", "waiting", "pending", "due", "running", "succeeded_1h", "failed_1h"],
          empty="no queue has live jobs, finished any in the last hour, or is paused")


@queues_group.command("pause")
@click.argument("name")
@click.option("--reason", help="Why, shown in `queues ls` and the dashboard.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def queues_pause(ctx: Context, name: str, reason: str | None, as_json: bool) -> None:
    """Pause queue NAME on every worker: its pending jobs wait, schedules keep adding to it."""
    check_name(name, "queue", MAX_QUEUE_LENGTH)  # before the database starts
    if reason is not None:
        check_name(reason, "reason", MAX_REASON_LENGTH)
    row = run_ops(ctx.load_app(), lambda ops: ops.queues.pause(SERVICE, name, reason))
    if as_json:
        emit_json(row)
    else:
        click.echo(f"queue {name!r} is paused (since {short_time(row['paused_at'])} UTC); "
                   "`jobline queues resume` resumes it")


@queues_group.command("resume")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def queues_resume(ctx: Context, name: str, as_json: bool) -> None:
    """Resume queue NAME: idle workers claim its due jobs at once."""
    check_name(name, "queue", MAX_QUEUE_LENGTH)
    row = run_ops(ctx.load_app(), lambda ops: ops.queues.resume(SERVICE, name))
    if as_json:
        emit_json(row)
    else:
        click.echo(f"queue {name!r} is resumed" if row["was_paused"] else f"queue {name!r} was not paused")
