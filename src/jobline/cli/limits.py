"""`jobline limits ls|set|rm`: flow-control limits, held by the claim across every worker."""

from __future__ import annotations

import click

from ..auth import SERVICE
from ..limit import check_limit, describe, parse_rate
from .main import Context, cli, pass_context, run_ops
from .output import emit_json, short_time, table


@cli.group("limits")
def limits_group() -> None:
    """Flow control: at most N jobs of a function or queue running at once, or starting per
    period, across every worker (optionally per concurrency key). Jobs over a limit wait."""


def _scope(function: str | None, queue: str | None) -> tuple[str, str]:
    if (function is None) == (queue is None):
        raise click.UsageError("give exactly one of --function and --queue")
    return ("function", function) if function is not None else ("queue", queue)


@limits_group.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def limits_ls(ctx: Context, as_json: bool) -> None:
    """Every limit: what it holds, on what, and whether code or an operator set it."""
    rows = run_ops(ctx.load_app(), lambda ops: ops.limits.list(SERVICE))
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["limit"] = describe(row)
        row["updated"] = short_time(row["updated_at"])
    table(rows, ["scope", "target", "limit", "source", "updated"],
          empty="no limits: `jobline limits set --function NAME --concurrency N` adds one")


@limits_group.command("set")
@click.option("--function", help="Limit the jobs of this function.")
@click.option("--queue", help="Limit the jobs of this queue.")
@click.option("--concurrency", type=int, help="At most this many running at once (1 to 100000).")
@click.option("--rate", help="At most COUNT starts per PERIOD: 30/60s, 30/1m, 1000/1h.")
@click.option("--per-key", is_flag=True, help="For each concurrency key separately.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def limits_set(ctx: Context, function: str | None, queue: str | None, concurrency: int | None, rate: str | None,
               per_key: bool, as_json: bool) -> None:
    """Add or replace a limit (it wins over one declared in code on the same target)."""
    scope, target = _scope(function, queue)
    rate_count, rate_seconds = parse_rate(rate) if rate is not None else (None, None)
    check_limit(scope, target, per_key=per_key, concurrency=concurrency, rate_count=rate_count,
                rate_seconds=rate_seconds)  # before the database starts
    row = run_ops(ctx.load_app(), lambda ops: ops.limits.set(
        SERVICE, scope, target, per_key=per_key, concurrency=concurrency, rate_count=rate_count,
        rate_seconds=rate_seconds))
    if as_json:
        emit_json(row)
    else:
        click.echo(f"limit on {scope} {target!r}: {describe(row)}")


@limits_group.command("rm")
@click.option("--function", help="The limit on this function.")
@click.option("--queue", help="The limit on this queue.")
@click.option("--per-key", is_flag=True, help="The per-key limit (not the overall one).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def limits_rm(ctx: Context, function: str | None, queue: str | None, per_key: bool, as_json: bool) -> None:
    """Remove a limit; its waiting jobs are claimed at the next claim."""
    scope, target = _scope(function, queue)
    check_limit(scope, target, per_key=per_key, concurrency=1)
    row = run_ops(ctx.load_app(), lambda ops: ops.limits.remove(SERVICE, scope, target, per_key=per_key))
    if as_json:
        emit_json(row)
    else:
        click.echo(f"removed the limit on {scope} {target!r} ({describe(row)})")
