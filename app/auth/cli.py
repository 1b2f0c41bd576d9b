"""`flask users ...`: manage accounts from the shell."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import AppGroup

from app.auth.users import UserError

users_cli = AppGroup("users", help="Manage user accounts.")


def _store():
    return current_app.extensions["scm.users"]


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; a trailing newline from `echo` is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@users_cli.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Give the user the admin role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create(name: str, admin: bool, password_stdin: bool) -> None:
    """Create user NAME (password from a prompt, or stdin)."""
    try:
        user = _store().create(name, _read_password(password_stdin),
                               "admin" if admin else "user")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.role} {user.username}")


@users_cli.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def set_password(name: str, password_stdin: bool) -> None:
    """Change the password of user NAME (revokes the user's tokens)."""
    try:
        _store().set_password(name, _read_password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password changed for {name}")


@users_cli.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "user"]))
def set_role(name: str, role: str) -> None:
    """Make user NAME an admin or a plain user (revokes the user's tokens)."""
    try:
        _store().set_role(name, role)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} is now {role}")


@users_cli.command("revoke-tokens")
@click.argument("name")
def revoke_tokens(name: str) -> None:
    """Sign user NAME out everywhere: every token issued so far is refused."""
    try:
        _store().revoke_tokens(name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"every token of {name} is revoked")


@users_cli.command("delete")
@click.argument("name")
def delete(name: str) -> None:
    """Remove user NAME (and every token of it; its jobs stay, owned by nobody)."""
    if not _store().delete(name):
        raise click.ClickException(f"no user {name!r}")
    click.echo(f"deleted {name}")


@users_cli.command("list")
def list_users() -> None:
    """Show every user: name, role, id."""
    for user in _store().list():
        click.echo(f"{user.username}\t{user.role}\t{user.id}")
