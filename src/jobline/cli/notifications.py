"""`jobline notifications [ls]|subscribe|subscriptions|unsubscribe`: the record of events (a job
failed for good, a schedule deactivated itself, a function keeps failing, a pipeline run ended)
and the webhook subscriptions that receive them. The CLI acts as the service: it lists every
event, and a subscription without --owner is the operator's, which receives every event."""

from __future__ import annotations

import click

from ..auth import SERVICE
from ..errors import InvalidInput
from ..job import MAX_ID, parse_run_at
from ..operations.notifications import EVENT_KINDS
from .main import Context, cli, pass_context, run_ops
from .output import emit_json, short_time, table


def _list_options(command):
    for option in reversed([
            click.option("--kind", type=click.Choice(EVENT_KINDS), help="Only events of this kind."),
            click.option("--since", help="Only events at or after this time, ISO 8601 (naive times are UTC)."),
            click.option("--owner", help="Only this user's events."),
            click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True),
            click.option("--before", "before_id", type=click.IntRange(1, MAX_ID),
                         help="Events with ids below this (the next page)."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON.")]):
        command = option(command)
    return command


@cli.group("notifications", invoke_without_command=True)
@_list_options
@click.pass_context
def notifications_group(click_ctx: click.Context, **options) -> None:
    """Events, newest first (alone: as `notifications ls`), and webhook subscriptions."""
    if click_ctx.invoked_subcommand is None:
        _list(click_ctx.obj, **options)


@notifications_group.command("ls")
@_list_options
@pass_context
def notifications_ls(ctx: Context, **options) -> None:
    """Events, newest first."""
    _list(ctx, **options)


def _list(ctx: Context, kind, since, owner, limit, before_id, as_json) -> None:
    since_at = parse_run_at(since, "--since") if since else None
    page = run_ops(ctx.load_app(), lambda ops: ops.notifications.list(
        SERVICE, kind=kind, since=since_at, owner=owner, limit=limit, before_id=before_id))
    if as_json:
        emit_json(page.rows)
        return
    rows = [{**row, "at": short_time(row["created_at"]), "owner": row["owner"] or "-",
             "detail": _detail(row)} for row in page.rows]
    table(rows, ["id", "at", "kind", "owner", "subject", "detail"], empty="no notifications")
    if page.next_cursor is not None:
        click.echo(f"(more: --before {page.next_cursor})")


def _detail(row: dict) -> str | None:
    data = row["data"] or {}
    text = data.get("reason") or data.get("error") or data.get("last_error")
    if row["kind"] == "function.failing":
        text = f"{data.get('failures')} failures within {data.get('window_seconds'):g} s"
    return (str(text).strip().split("\n", 1)[0][:120] or None) if text else None


@notifications_group.command("subscribe")
@click.argument("url")
@click.option("--event", "events", multiple=True, type=click.Choice(EVENT_KINDS),
              help="Only this kind of event (repeatable; default: every kind).")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="Send this header with each delivery (repeatable); the value may hold {{secret:NAME}}.")
@click.option("--owner", help="A user's subscription (their events; {{owner_secret:NAME}}); default: the "
                              "operator's, which receives every event.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def notifications_subscribe(ctx: Context, url: str, events: tuple[str, ...], headers: tuple[str, ...],
                            owner: str | None, as_json: bool) -> None:
    """POST each event to URL, by a durable http job (retried, with an Idempotency-Key header)."""
    parsed: dict[str, str] = {}
    for header in headers:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise InvalidInput(f"--header {header!r}: write it as 'Name: value'")
        if name.strip().lower() in (given.lower() for given in parsed):
            raise InvalidInput(f"--header: {name.strip()} is given twice")
        parsed[name.strip()] = value.strip()
    row = run_ops(ctx.load_app(), lambda ops: ops.notifications.subscribe(
        SERVICE, url, events=list(events) or None, headers=parsed, owner=owner))
    if as_json:
        emit_json(row)
    else:
        whose = f"user {row['owner']!r}'s events" if row["owner"] else "every event"
        kinds = ", ".join(row["events"]) if row["events"] else "all kinds"
        click.echo(f"subscription {row['id']} added: {whose} ({kinds}) to {row['url']}")


@notifications_group.command("subscriptions")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def notifications_subscriptions(ctx: Context, as_json: bool) -> None:
    """Every webhook subscription (owner '-': the operator's, every event)."""
    rows = run_ops(ctx.load_app(), lambda ops: ops.notifications.subscriptions(SERVICE))
    if as_json:
        emit_json(rows)
        return
    shown = [{**row, "owner": row["owner"] or "-", "events": ",".join(row["events"]) if row["events"] else "all",
              "headers": ",".join(row["headers"]) or None} for row in rows]
    table(shown, ["id", "owner", "events", "url", "headers", "created_at"], empty="no subscriptions")


@notifications_group.command("unsubscribe")
@click.argument("subscription_id", type=click.IntRange(min=1), metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def notifications_unsubscribe(ctx: Context, subscription_id: int, as_json: bool) -> None:
    """Remove subscription ID; deliveries already queued still run."""
    row = run_ops(ctx.load_app(), lambda ops: ops.notifications.unsubscribe(SERVICE, subscription_id))
    if as_json:
        emit_json({**row, "removed": True})
    else:
        click.echo(f"subscription {row['id']} removed")
