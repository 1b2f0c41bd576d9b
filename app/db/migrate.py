"""Schema migrations (Alembic) for the job and user store.

Every process upgrades the database to the newest migration when it first opens it
(`engine_for`), and `flask db upgrade` does the same by hand. Concurrent starts (gunicorn
workers, Celery children, several hosts) must not race: the upgrade runs under a lock
that spans processes and hosts:

* PostgreSQL: a session-level advisory lock, held on the connection that migrates;
  whoever waits for it finds the schema current once it gets it, and does nothing.
* SQLite: an exclusive `flock` on a file beside the database (same host by definition).

A database made before migrations existed (tables, no `alembic_version`) is adopted by
the baseline migration, which creates only what is missing.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any fixed 64-bit number: names "the schema migration" among advisory locks.
ADVISORY_LOCK_KEY = 0x5C3D_B0A7_0000_0001 & 0x7FFF_FFFF_FFFF_FFFF

log = logging.getLogger(__name__)
# Alembic narrates every start at INFO (plugins, DDL mode); one line of ours says it all.
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # the package ships its migrations; none means a broken install
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to `revision`; cheap (one query) when it already is there.
    Returns the revision the database is at afterwards."""
    if revision == "head":
        with engine.connect() as conn:
            if current_revision(conn) == head_revision():
                return head_revision()
    with migration_lock(engine) as conn:
        before = current_revision(conn)
        conn.commit()  # a transaction left open would swallow Alembic's own commit
        command.upgrade(alembic_config(conn), revision)
        conn.commit()
        after = current_revision(conn)
    if after != before:
        log.info("database %s upgraded from revision %s to %s",
                 engine.url.render_as_string(hide_password=True), before or "none", after)
    return after


@contextlib.contextmanager
def migration_lock(engine: Engine):
    """A connection on which the caller alone may migrate."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
            conn.commit()  # the lock is the session's, not the transaction's
            try:
                yield conn
            finally:
                conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"),
                             {"key": ADVISORY_LOCK_KEY})
                conn.commit()
            return
        with _file_lock(engine.url.database):
            yield conn


@contextlib.contextmanager
def _file_lock(database: str | None):
    if not database or database == ":memory:":
        yield
        return
    fd = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def history() -> list[tuple[str, str | Sequence[str] | None, str]]:
    """(revision, down revision(s: a merge has several), title), newest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [(rev.revision, rev.down_revision, rev.doc or "")
            for rev in script.walk_revisions()]
