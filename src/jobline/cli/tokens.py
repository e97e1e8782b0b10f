"""`jobline tokens create|ls|revoke`: users' API tokens, stored only as SHA-256 hashes."""

from __future__ import annotations

import click

from ..auth import SERVICE
from ..job import check_name
from .main import Context, cli, pass_context, run_ops
from .output import emit_json, table


@cli.group("tokens")
def tokens_group() -> None:
    """API tokens for users: bearer credentials for the HTTP API that act as that user."""


def _jsonable(row: dict) -> dict:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


@tokens_group.command("create")
@click.option("--user", "user_id", required=True, help="The user (owner) the token acts as.")
@click.option("--name", help="A label to recognise it by, e.g. the machine that uses it.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the token included).")
@pass_context
def tokens_create(ctx: Context, user_id: str, name: str | None, as_json: bool) -> None:
    """Create a token for a user. It is shown once: only its hash is stored."""
    check_name(user_id, "user id")  # before the database starts
    if name is not None:
        check_name(name, "token name")
    row, token = run_ops(ctx.load_app(), lambda ops: ops.tokens.create(SERVICE, user_id, name))
    if as_json:
        emit_json({**_jsonable(row), "token": token})
        return
    click.echo(token)
    click.echo(f"token {row['id']} for user {user_id!r}: shown only now; store it as a secret", err=True)


@tokens_group.command("ls")
@click.option("--user", "user_id", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def tokens_ls(ctx: Context, user_id: str | None, as_json: bool) -> None:
    """Tokens with their user, name, prefix, creation, last use and revocation (never the token)."""
    rows = [_jsonable(row) for row in run_ops(ctx.load_app(), lambda ops: ops.tokens.list(SERVICE, user_id))]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        row["prefix"] = row["prefix"] + "..."
        row["state"] = "revoked" if row["revoked_at"] else "active"
    table(rows, ["id", "user_id", "name", "prefix", "state", "created_at", "last_used_at"], empty="no tokens")


@tokens_group.command("revoke")
@click.argument("token_id", type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def tokens_revoke(ctx: Context, token_id: int, as_json: bool) -> None:
    """Revoke token TOKEN_ID (see `jobline tokens ls`): it is refused from now on."""
    row = _jsonable(run_ops(ctx.load_app(), lambda ops: ops.tokens.revoke(SERVICE, token_id)))
    if as_json:
        emit_json(row)
    else:
        click.echo(f"token {row['id']} of user {row['user_id']!r} is revoked")
