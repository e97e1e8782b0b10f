"""`jobline secrets generate-key|set|ls|rm|rotate-key`: the encrypted vault (see vault.py).

A value comes from an argument, standard input or a hidden prompt, is encrypted in this process
under JOBLINE_MASTER_KEY, and reaches the database as ciphertext. No command prints a value.
"""

from __future__ import annotations

import sys

import click

from .. import vault
from ..errors import InvalidInput
from ..job import check_name
from .main import Context, cli, pass_context, run_app
from .output import emit_json, table


OWNER_HELP = ("A user's secret (their id), which calls made for that user's jobs use as "
              "{{owner_secret:NAME}}; without it, the operator's ({{secret:NAME}}).")


@cli.group("secrets")
def secrets_group() -> None:
    """Encrypted values that HTTP calls use as {{secret:NAME}} (the operator's) or
    {{owner_secret:NAME}} (the job owner's).

    Values are encrypted with JOBLINE_MASTER_KEY before they reach the database; `set` and
    `rotate-key` need it, `ls` and `rm` do not.
    """


@secrets_group.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new random master key (and nothing else) for JOBLINE_MASTER_KEY."""
    click.echo(vault.generate_key())


@secrets_group.command("set")
@click.argument("name")
@click.argument("value", required=False)
@click.option("--from-stdin", is_flag=True, help="Read the value from standard input (one trailing newline is dropped).")
@click.option("--owner", help=OWNER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the secret's name, owner, key id and times as JSON.")
@pass_context
def secrets_set(ctx: Context, name: str, value: str | None, from_stdin: bool, owner: str | None,
                as_json: bool) -> None:
    """Encrypt a value and store it as the secret NAME (replacing its value if it exists).

    Without VALUE or --from-stdin, asks for it without echoing. A VALUE on the command line is
    visible to other local users (ps) and kept in shell history: prefer the other two.
    """
    vault.check_name(name)
    if owner is not None:
        check_name(owner, "--owner")
    app = ctx.load_app()
    app.master_keys()  # no key: say how to make one before asking for the value
    value = _read_value(name, value, from_stdin)
    info = run_app(app, lambda app: app.set_secret_async(name, value, owner=owner))
    if as_json:
        emit_json(info.to_dict())
    else:
        whose = "" if owner is None else f" of user {owner}"
        click.echo(f"set secret {info.name}{whose} (master key {info.key_id})")


def _read_value(name: str, value: str | None, from_stdin: bool) -> str:
    if value is not None and from_stdin:
        raise InvalidInput("give the value as an argument or with --from-stdin, not both")
    if from_stdin:
        try:
            value = click.get_binary_stream("stdin").read().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the value on standard input is not UTF-8 text") from None
        value = value.removesuffix("\n").removesuffix("\r") if value.endswith("\n") else value
    elif value is None:
        if not sys.stdin.isatty():
            raise InvalidInput(f"no value given: `jobline secrets set {name} --from-stdin` reads it from "
                               "standard input (or run in a terminal to be asked for it)")
        value = click.prompt(f"value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise InvalidInput(f"the value of secret {name!r} is empty; secrets must not be empty")
    return value


@secrets_group.command("ls")
@click.option("--owner", help="A user's secrets (their id) instead of the operator's.")
@click.option("--all", "every_owner", is_flag=True, help="Everyone's secrets: the operator's and every user's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def secrets_ls(ctx: Context, owner: str | None, every_owner: bool, as_json: bool) -> None:
    """The operator's secrets by name (or a user's, or everyone's), with the master key each is
    sealed under (never their values)."""
    if owner is not None and every_owner:
        raise InvalidInput("give --owner or --all, not both")
    rows = [info.to_dict() for info in run_app(
        ctx.load_app(), lambda app: app.list_secrets_async(owner=owner, every_owner=every_owner))]
    if as_json:
        emit_json(rows)
        return
    columns = (["owner"] if every_owner else []) + ["name", "key_id", "created_at", "updated_at"]
    if ctx.settings.master_key:  # already validated by Settings
        keys = vault.MasterKeys.parse(ctx.settings.master_key)
        for row in rows:
            if row["key_id"] != keys.current.key_id:
                row["note"] = ("older key: run `jobline secrets rotate-key`" if keys.find(row["key_id"])
                               else "key not in JOBLINE_MASTER_KEY")
        columns.append("note")
    table(rows, columns, empty="no secrets")


@secrets_group.command("rm")
@click.argument("name")
@click.option("--owner", help="A user's secret (their id) instead of the operator's.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def secrets_rm(ctx: Context, name: str, owner: str | None, as_json: bool) -> None:
    """Delete the secret NAME (jobs that reference it then fail, naming it)."""
    run_app(ctx.load_app(), lambda app: app.delete_secret_async(name, owner=owner))
    if as_json:
        emit_json({"name": name, "owner": owner, "deleted": True})
    else:
        click.echo(f"removed secret {name}" + ("" if owner is None else f" of user {owner}"))


@secrets_group.command("rotate-key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def secrets_rotate_key(ctx: Context, as_json: bool) -> None:
    """Re-encrypt every secret under the first key of JOBLINE_MASTER_KEY="NEW,OLD".

    Safe to run again after a crash or an interruption: it finishes what is left.
    """
    app = ctx.load_app()
    keys = app.master_keys()
    rotation = run_app(app, lambda app: app.rotate_secrets_async())
    if as_json:
        emit_json(rotation.to_dict())
        return
    click.echo(f"rotated {rotation.rotated} secret(s) to master key {rotation.key_id}; "
               f"{rotation.current} already under it")
    if len(keys.keys) > 1:
        click.echo("every secret is now under the first key: JOBLINE_MASTER_KEY can drop the others")
