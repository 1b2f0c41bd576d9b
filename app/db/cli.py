"""`flask db ...`: the store's schema from the shell (the app also upgrades at start)."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from app.db.engine import create_engine
from app.db.migrate import current_revision, head_revision, history, upgrade
from app.urls import mask_url

db_cli = AppGroup("db", help="Manage the job and user store's schema.")


def _engine():
    return create_engine(current_app.config["SETTINGS"].database_url)


def _where() -> str:
    return mask_url(current_app.config["SETTINGS"].database_url)


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    engine = _engine()
    try:
        now = upgrade(engine, revision)
    except Exception as exc:  # one line for the operator, not a traceback
        raise click.ClickException(f"upgrade of {_where()} failed: {exc}") from None
    finally:
        engine.dispose()
    click.echo(f"{_where()}: at revision {now}")


@db_cli.command("current")
def current_command() -> None:
    """Show the revision the database is at, and the newest one this code knows."""
    engine = _engine()
    try:
        with engine.connect() as conn:
            now = current_revision(conn)
    except Exception as exc:
        raise click.ClickException(f"cannot read {_where()}: {exc}") from None
    finally:
        engine.dispose()
    state = "up to date" if now == head_revision() else f"newest is {head_revision()}"
    click.echo(f"{_where()}: at revision {now or 'none'} ({state})")


@db_cli.command("history")
def history_command() -> None:
    """List the migrations, newest first."""
    for revision, down, title in history():
        click.echo(f"{down or '<base>'} -> {revision}: {title.splitlines()[0] if title else ''}")
