"""`jobline cron add|rm|ls|runs|pause|resume|trigger`: schedules, addressed by name or id."""

from __future__ import annotations

import datetime as dt
import json

import click

from ..auth import SERVICE
from ..cron import RESTART_MACROS
from ..operations.schedules import Schedules
from ..schedule import CATCH_UP_POLICIES, OVERLAP_POLICIES, Schedule
from .main import Context, cli, pass_context, run_app, run_ops
from .output import emit_json, short_time, table
from .params import JSON_OBJECT


@cli.group("cron")
def cron_group() -> None:
    """Cron schedules: each tick enqueues a function, or runs a SQL command, exactly once."""


def _schedule_row(schedule: Schedule, last=None, now: dt.datetime | None = None) -> dict:
    row = schedule.summary(last, now)
    row["target"] = (schedule.payload.get("command", "") if schedule.function == "sql"
                     else f"{schedule.function} {_compact(schedule.payload)}")
    row["state"] = "active" if schedule.active else "deactivated" if schedule.deactivated_at else "paused"
    return row


def _when(schedule: Schedule, row: dict) -> str:
    """When it fires next, in words."""
    if not schedule.active:
        return "paused"
    if " ".join(schedule.expression.split()).lower() in RESTART_MACROS:
        return "runs when the PostgreSQL server next starts"
    return f"next run {short_time(row['next_run'])} UTC" if row["next_run"] else "next run unknown"


def _compact(payload: dict) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


@cron_group.command("add")
@click.argument("name")
@click.argument("expression")
@click.option("--function", help="Enqueue this function on each tick.")
@click.option("--payload", type=JSON_OBJECT, help="The function's payload, a JSON object; @FILE reads it from a file, - from stdin.")
@click.option("--sql", "sql_command", help="Run this SQL command on each tick (instead of --function).")
@click.option("--pipeline", expose_value=False, callback=lambda c, _, v: c.meta.__setitem__("pipeline", v),
              help="Start a run of this pipeline on each tick, with --payload (instead of --function).")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of the expression.")
@click.option("--owner", help="The user the schedule's jobs belong to.")
@click.option("--queue", help="Queue of its jobs.")
@click.option("--priority", type=int, help="Priority of its jobs (-1000 to 1000).")
@click.option("--max-attempts", type=int, help="Attempts of each job (1 to 1000).")
@click.option("--overlap", type=click.Choice(OVERLAP_POLICIES), default="skip", show_default=True,
              help="skip: a tick is skipped while an earlier run is still waiting, pending or running.")
@click.option("--catch-up", type=click.Choice(CATCH_UP_POLICIES), default="latest", show_default=True,
              help="After downtime: run the latest missed tick, none, or all of them (up to --catch-up-max).")
@click.option("--catch-up-max", type=int, default=10, show_default=True, help="Most missed ticks run by --catch-up all.")
@click.option("--paused", is_flag=True, help="Add it paused.")
@click.option("--replace", is_flag=True, help="Replace a schedule of the same name.")
@click.option("--max-consecutive-failures", type=int,
              help="Pause it after this many failed runs in a row (1 to 1000; default never).")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
@pass_context
def cron_add(ctx: Context, name, expression, function, payload, sql_command, timezone, owner, queue, priority,
             max_attempts, overlap, catch_up, catch_up_max, paused, replace, max_consecutive_failures,
             as_json) -> None:
    """Add schedule NAME firing on EXPRESSION ('0 3 * * SUN', '@daily', '30 seconds', ...)."""
    options = {k: v for k, v in dict(queue=queue, priority=priority, max_attempts=max_attempts,
                                     max_consecutive_failures=max_consecutive_failures).items()
               if v is not None}
    if click.get_current_context().meta.get("pipeline") is not None:  # --pipeline (kept off the signature)
        options["pipeline"] = click.get_current_context().meta["pipeline"]
    schedule = run_app(ctx.load_app(), lambda app: app.add_schedule_async(
        name, expression, function, payload, sql=sql_command,
        timezone=timezone, owner=owner, overlap=overlap, catch_up=catch_up, catch_up_max=catch_up_max,
        active=not paused, replace=replace, **options))
    row = _schedule_row(schedule)
    if as_json:
        emit_json(row)
    else:
        click.echo(f"schedule {schedule.label} (id {schedule.id}) added: {schedule.expression} "
                   f"{schedule.timezone}, {_when(schedule, row)}")


@cron_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def cron_ls(ctx: Context, as_json: bool) -> None:
    """Every schedule with its next run and the outcome of its latest run."""
    now = dt.datetime.now(dt.timezone.utc)
    listed = run_ops(ctx.load_app(), lambda ops: ops.schedules.list(SERVICE))
    rows = [_schedule_row(s, last, now) for s, last in listed]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        if row["state"] == "active" and " ".join(row["expression"].split()).lower() in RESTART_MACROS:
            row["next_run"] = "at server start"
        last = row["last_run"]
        row["last"] = f"{last['outcome']} {short_time(last['tick_at'] or last['created_at'])}" if last else None
        row["name"] = row["name"] or "-"
    table(rows, ["id", "name", "expression", "timezone", "target", "state", "next_run", "last"],
          empty="no schedules")


@cron_group.command("runs")
@click.argument("ref")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--before", "before_id", type=click.IntRange(min=1), help="Runs with ids below this (next page).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def cron_runs(ctx: Context, ref: str, limit: int, before_id: int | None, as_json: bool) -> None:
    """Recent runs of schedule REF (a name or an id), newest first."""

    page = run_ops(ctx.load_app(), lambda ops: ops.schedules.runs(SERVICE, ref, limit=limit, before_id=before_id))
    runs = [run.to_dict() for run in page.rows]
    if as_json:
        emit_json(runs)
        return
    for run in runs:
        run["tick"] = run["tick_at"] or "(triggered)"
        run["detail"] = run["message"] or (run["last_error"] or "").strip().split("\n", 1)[0] or None
    table(runs, ["id", "tick", "outcome", "job_id", "created_at", "finished_at", "detail"], empty="no runs yet")
    if page.next_cursor is not None:
        click.echo(f"(more: --before {page.next_cursor})")


def _steer(name: str, help_text: str, action) -> None:
    @cron_group.command(name, help=help_text)
    @click.argument("ref")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    @pass_context
    def command(ctx: Context, ref: str, as_json: bool) -> None:
        outcome = run_ops(ctx.load_app(), lambda ops: action(ops.schedules, ref))
        if as_json:  # the HTTP API's fields; the message is for people
            emit_json({k: v for k, v in outcome.items() if k != "message"})
        else:
            click.echo(outcome["message"])


async def _remove(schedules: Schedules, ref: str) -> dict:
    schedule = await schedules.remove(SERVICE, ref)
    return {"id": schedule.id, "name": schedule.name, "removed": True,
            "message": f"removed schedule {schedule.label} (id {schedule.id})"}


async def _set_active(schedules: Schedules, ref: str, active: bool) -> dict:
    changed = await (schedules.resume if active else schedules.pause)(SERVICE, ref)
    row = _schedule_row(changed)
    row["message"] = f"schedule {changed.label} is {row['state']}" + (
        f", {_when(changed, row)}" if changed.active else "")
    return row


@cron_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def cron_show(ctx: Context, ref: str, as_json: bool) -> None:
    """Schedule REF (a name or an id): its definition, its state and, when it paused itself after
    failed runs in a row (max_consecutive_failures), when and why."""
    schedule = run_ops(ctx.load_app(), lambda ops: ops.schedules.get(SERVICE, ref))
    row = _schedule_row(schedule, now=dt.datetime.now(dt.timezone.utc))
    if as_json:
        emit_json(row)
        return
    lines = [("id", row["id"]), ("name", row["name"] or "-"), ("expression", f"{row['expression']} {row['timezone']}"),
             ("target", row["target"]), ("owner", row["owner"] or "-"), ("state", row["state"]),
             ("next run", _when(schedule, row)),
             ("max consecutive failures", row["max_consecutive_failures"] or "never")]
    if schedule.deactivated_at is not None:
        lines += [("deactivated at", f"{short_time(row['deactivated_at'])} UTC"),
                  ("deactivated because", row["deactivated_reason"])]
    for label, value in lines:
        click.echo(f"{label + ':':<26}{value}")


async def _trigger(schedules: Schedules, ref: str) -> dict:
    schedule, job_id = await schedules.trigger(SERVICE, ref)
    return {"id": schedule.id, "name": schedule.name, "job_id": job_id,
            "message": f"schedule {schedule.label} triggered: job {job_id}"}


_steer("rm", "Remove schedule REF (a name or an id) and its run history; its jobs stay.", _remove)
_steer("pause", "Pause schedule REF: no ticks until it is resumed.",
       lambda schedules, ref: _set_active(schedules, ref, False))
_steer("resume", "Resume schedule REF; the ticks of the pause are not caught up.",
       lambda schedules, ref: _set_active(schedules, ref, True))
_steer("trigger", "Run schedule REF once now, outside its ticks (recorded as a triggered run).", _trigger)
