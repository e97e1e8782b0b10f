"""`jobline pipelines ls|start|runs|show|cancel|retry`: pipelines declared in code and their runs.

With ``--app``, the App's declared pipelines are recorded first (as a worker or `jobline serve`
does when it starts), so `jobline --app myapp:app pipelines start NAME` works before any worker
has run.
"""

from __future__ import annotations

import click

from ..auth import SERVICE
from ..job import MAX_NAME_LENGTH, check_name
from ..operations.pipelines import MAX_PAGE, MAX_REASON_LENGTH
from ..pipeline import RUN_STATUSES
from .main import Context, cli, pass_context, run_app
from .output import emit_json, short_time, table
from .params import JSON_OBJECT


def _with_pipelines(ctx: Context, work):
    """Run ``work(ops)`` as the service, the App's declared pipelines recorded first."""

    async def go(app):
        await app.record_pipelines_async()
        return await work(app.ops)

    return run_app(ctx.load_app(), go)


@cli.group("pipelines")
def pipelines_group() -> None:
    """Pipelines: graphs of steps declared in code, and their runs."""


@pipelines_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def pipelines_ls(ctx: Context, as_json: bool) -> None:
    """Each recorded pipeline: its steps, its runs and the latest run's status."""
    rows = _with_pipelines(ctx, lambda ops: ops.pipelines.list(SERVICE))
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["steps"] = " ".join(_step_text(s) for s in row["steps"])
        row["last_run"] = f"#{row['last_run_id']} {row['last_run_status']}" if row["last_run_id"] else None
    table(rows, ["name", "runs", "last_run", "steps"],
          empty="no pipeline is recorded: declare one with app.pipeline(...) and start a worker (or pass --app)")


def _step_text(step: dict) -> str:
    after = step.get("after") or []
    return f"{'+'.join(after)}->{step['name']}" if after else step["name"]


@pipelines_group.command("start")
@click.argument("name")
@click.option("--payload", type=JSON_OBJECT, help="The run's payload: a JSON object, @FILE or - (stdin).")
@click.option("--owner", help="Who the run (and its step jobs) belong to.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def pipelines_start(ctx: Context, name: str, payload: dict | None, owner: str | None, as_json: bool) -> None:
    """Start a run of pipeline NAME: every step becomes a job, in one transaction."""
    check_name(name, "pipeline name", MAX_NAME_LENGTH)
    if owner is not None:
        check_name(owner, "owner")
    run = _with_pipelines(ctx, lambda ops: ops.pipelines.start(SERVICE, name, payload, owner=owner))
    if as_json:
        emit_json(run)
    else:
        click.echo(f"started run {run['id']} of pipeline {name!r} ({len(run['steps'])} steps); "
                   f"`jobline pipelines show {run['id']}` follows it")


@pipelines_group.command("runs")
@click.option("--pipeline", help="Only runs of this pipeline.")
@click.option("--status", type=click.Choice(RUN_STATUSES), help="Only runs in this status.")
@click.option("--owner", help="Only this owner's runs.")
@click.option("--before", "before_id", type=click.IntRange(min=1), help="Runs with ids below this (next page).")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def pipelines_runs(ctx: Context, pipeline, status, owner, before_id, limit, as_json) -> None:
    """Runs, newest first."""
    page = run_app(ctx.load_app(), lambda app: app.ops.pipelines.runs(
        SERVICE, pipeline=pipeline, status=status, owner=owner, before_id=before_id, limit=limit))
    if as_json:
        emit_json({"runs": page.rows, "next_cursor": page.next_cursor})
        return
    for row in page.rows:
        row["done"] = f"{row['succeeded']}/{row['steps']}"
    table(page.rows, ["id", "pipeline", "status", "done", "owner", "created_at", "finished_at"], empty="no runs")
    if page.next_cursor is not None:
        click.echo(f"more: --before {page.next_cursor}")


@pipelines_group.command("show")
@click.argument("run_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def pipelines_show(ctx: Context, run_id: int, as_json: bool) -> None:
    """A run: its steps (status, attempts, result or error) and its history."""
    run = run_app(ctx.load_app(), lambda app: app.ops.pipelines.get(SERVICE, run_id))
    if as_json:
        emit_json(run)
        return
    _print_run(run)


def _print_run(run: dict) -> None:
    click.echo(f"run {run['id']} of {run['pipeline']}: {run['status']}  (owner {run['owner'] or '-'}, "
               f"started {short_time(run['created_at'])}, finished {short_time(run['finished_at']) or '-'})")
    rows = [{**s, "after": ",".join(s["after"]) or None, "attempts": f"{s['attempts']}/{s['max_attempts']}"
             if s["attempts"] is not None else None, "outcome": s["error"] if s["status"] in ("failed", "cancelled")
             else s["result"]} for s in run["steps"]]
    table(rows, ["name", "function", "after", "status", "attempts", "job_id", "outcome"])
    click.echo("history:")
    table(run["history"], ["at", "step", "event", "message"])


@pipelines_group.command("cancel")
@click.argument("run_id", type=click.IntRange(min=1))
@click.option("--reason", help="Why; kept as each cancelled step's error.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def pipelines_cancel(ctx: Context, run_id: int, reason: str | None, as_json: bool) -> None:
    """Cancel the unfinished steps of a running run."""
    if reason is not None:
        check_name(reason, "reason", MAX_REASON_LENGTH)
    run = run_app(ctx.load_app(), lambda app: app.ops.pipelines.cancel(SERVICE, run_id, reason))
    if as_json:
        emit_json(run)
    else:
        click.echo(f"run {run_id} is {run['status']}")


@pipelines_group.command("retry")
@click.argument("run_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def pipelines_retry(ctx: Context, run_id: int, as_json: bool) -> None:
    """Run a failed or cancelled run again from its failed step(s), keeping earlier results."""
    run = run_app(ctx.load_app(), lambda app: app.ops.pipelines.retry(SERVICE, run_id))
    if as_json:
        emit_json(run)
    else:
        again = [s["name"] for s in run["steps"] if s["status"] in ("pending", "waiting")]
        click.echo(f"run {run_id} is {run['status']} again: {', '.join(again)} will run")
