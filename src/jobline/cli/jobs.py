"""`jobline enqueue`, `jobline jobs list|show|retry|cancel|run-now|archive`, `jobline functions ls`."""

from __future__ import annotations


import click

from ..auth import SERVICE
from ..job import FINAL_STATUSES, JobStatus, parse_run_at
from ..operations import Operations
from .main import Context, cli, pass_context, run_app, run_ops
from .output import emit_json, short_time, table
from .params import JSON_OBJECT

STATUSES = [s.value for s in JobStatus]


@cli.command("enqueue")
@click.argument("function")
@click.option("--payload", type=JSON_OBJECT, default="{}", help="The job's input, a JSON object; @FILE reads it from a file, - from stdin.")
@click.option("--run-at", help="When to run, ISO 8601 (naive times are UTC).")
@click.option("--delay", type=float, help="Run after this many seconds.")
@click.option("--queue", help="Queue name (default: the function's, or 'default').")
@click.option("--owner", help="The user the job belongs to.")
@click.option("--priority", type=int, help="Higher runs first (-1000 to 1000).")
@click.option("--depends-on", type=int, multiple=True, help="Run only after this job succeeds (repeatable).")
@click.option("--unique-key", help="Return the live job with this key instead of adding a duplicate.")
@click.option("--max-attempts", type=int, help="Attempts before the job fails (1 to 1000).")
@click.option("--concurrency-key", help="Count the job under this key for limits set per key (`jobline limits`).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_context
def enqueue(ctx: Context, function, payload, run_at, delay, queue, owner, priority, depends_on,
            unique_key, max_attempts, concurrency_key, as_json) -> None:
    """Queue a job for FUNCTION (any well-formed name: remote task types need no local code)."""
    if run_at is not None and delay is not None:
        raise click.UsageError("give either --run-at or --delay, not both")
    options = dict(payload=payload, run_at=parse_run_at(run_at) if run_at else None,
                   delay=delay, queue=queue, owner=owner, priority=priority,
                   depends_on=list(depends_on) or None, unique_key=unique_key, max_attempts=max_attempts,
                   concurrency_key=concurrency_key)
    job = run_app(ctx.load_app(), lambda app: app.enqueue_async(function, **options))
    if as_json:
        emit_json(job.to_dict())
    else:
        click.echo(f"enqueued job {job.id} ({job.function}, {job.status}, run at {short_time(job.run_at)} UTC)")


@cli.group("jobs")
def jobs_group() -> None:
    """List, inspect and steer jobs."""


def _job_row(job, served: bool | None = None) -> dict:
    row = job.to_dict()
    row["attempts"] = f"{job.attempts}/{job.max_attempts}"
    # A succeeded job's last_error is an earlier attempt's: not what went wrong with the job.
    error = None if job.status == "succeeded" else job.last_error
    row["error"] = (error or "").strip().split("\n", 1)[0] or None
    if served is not None:
        row["served"] = served
        row["note"] = "no live worker serves this function" if (not served and job.status not in FINAL_STATUSES) else None
    return row


@jobs_group.command("list")
@click.option("--status", type=click.Choice(STATUSES), multiple=True, help="Only these states (repeatable).")
@click.option("--function", help="Only this function.")
@click.option("--queue", help="Only this queue.")
@click.option("--owner", help="Only this owner's jobs.")
@click.option("--before", "before_id", type=click.IntRange(min=1), help="Jobs with ids below this (next page).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--archived", is_flag=True, help="Include archived jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def jobs_list(ctx: Context, status, function, queue, owner, before_id, limit, archived, as_json) -> None:
    """Newest jobs first; flags jobs of functions no live worker serves."""
    page = run_ops(ctx.load_app(), lambda ops: ops.jobs.list(
        SERVICE, statuses=status, function=function, queue=queue, owner=owner, before_id=before_id,
        include_archived=archived, limit=limit))
    out = [_job_row(job, served) for job, served in page.rows]
    if as_json:
        emit_json(out)
        return
    table(out, ["id", "function", "status", "queue", "owner", "attempts", "run_at", "error", "note"],
          empty="no jobs")
    if page.next_cursor is not None:
        click.echo(f"(more: --before {page.next_cursor})")


@jobs_group.command("show")
@click.argument("job_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def jobs_show(ctx: Context, job_id: int, as_json: bool) -> None:
    """A job with its payload, result and every attempt."""

    async def work(ops: Operations):
        return await ops.jobs.get(SERVICE, job_id), await ops.jobs.attempts(SERVICE, job_id)

    job, attempts = run_ops(ctx.load_app(), work)
    data = job.to_dict()
    data["attempt_history"] = [a.to_dict() for a in attempts]
    if as_json:
        emit_json(data)
        return
    for key in ("id", "function", "status", "queue", "priority", "owner", "run_at", "depends_on", "unique_key",
                "concurrency_key",
                "created_at", "started_at", "finished_at", "archived_at"):
        if data[key] is not None:
            click.echo(f"{key + ':':<13}{short_time(data[key]) if key.endswith(('_at')) else data[key]}")
    click.echo(f"{'attempts:':<13}{job.attempts}/{job.max_attempts}")
    click.echo(f"{'payload:':<13}{_json_line(job.payload)}")
    if job.result is not None:
        click.echo(f"{'result:':<13}{_json_line(job.result)}")
    if job.last_error:
        click.echo(f"{'last_error:':<13}{job.last_error.strip().splitlines()[0]}")
    click.echo("")
    table([{**a.to_dict(), "error": (a.error or "").strip().split("\n", 1)[0] or None} for a in attempts],
          ["attempt", "outcome", "worker_id", "started_at", "duration_ms", "error"], empty="no attempts yet")
    last = next((a for a in reversed(attempts) if a.traceback), None)
    if last is not None:
        click.echo(f"\ntraceback of attempt {last.attempt}:\n{last.traceback.rstrip()}")


def _json_line(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _steer_command(name: str, action: str, help_text: str) -> None:
    @jobs_group.command(name, help=help_text)
    @click.argument("job_id", type=click.IntRange(min=1))
    @click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
    @pass_context
    def command(ctx: Context, job_id: int, as_json: bool) -> None:
        job = run_ops(ctx.load_app(), lambda ops: getattr(ops.jobs, action)(SERVICE, job_id))
        if as_json:
            emit_json(job.to_dict())
        else:
            click.echo(f"job {job.id} is now {job.status}" + (" (archived)" if job.archived_at else ""))


_steer_command("retry", "retry", "Run a failed or cancelled job again.")
_steer_command("cancel", "cancel", "Cancel a job that has not finished (and the jobs waiting on it).")
_steer_command("run-now", "run_now", "Make a pending job due now.")
_steer_command("archive", "archive", "Hide a finished job from listings until retention removes it.")


@jobs_group.command("run")
@click.argument("job_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_context
def jobs_run(ctx: Context, job_id: int, as_json: bool) -> None:
    """Run pending job JOB_ID now, in this process, whatever its run_at, even while its queue is
    paused or no worker runs; print how it ended. Needs --app with the job's function. Exit
    status 0 however the job ended (1 when it could not be run)."""
    job = run_app(ctx.load_app(), lambda app: app.run_job_async(job_id))
    if as_json:
        emit_json(job.to_dict())
        return
    ended = f"job {job.id} ({job.function}) {job.status}"
    if job.status == "pending":
        ended += f": attempt {job.attempts} failed, will retry at {short_time(job.run_at)} UTC"
    error = None if job.status == "succeeded" else (job.last_error or "").strip().split("\n", 1)[0]
    click.echo(ended + (f"\n{error}" if error else ""))


@cli.group("functions")
def functions_group() -> None:
    """Functions known to the database: from jobs and from live workers."""


@functions_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def functions_ls(ctx: Context, as_json: bool) -> None:
    """Each function with its job counts and how many live workers serve it."""
    rows = run_ops(ctx.load_app(), lambda ops: ops.jobs.functions(SERVICE))
    for row in rows:
        unfinished = row["waiting"] + row["pending"] + row["running"]
        row["note"] = "not served by any live worker" if row["workers"] == 0 and unfinished else None
    if as_json:
        emit_json(rows)
    else:
        table(rows, ["function", "workers", "waiting", "pending", "running", "succeeded", "failed",
                     "cancelled", "note"], empty="no functions yet")
