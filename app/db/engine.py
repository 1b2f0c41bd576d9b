"""SQLAlchemy engines for the job and user store, one per database URL per process.

SQLite (the embedded default): WAL so readers never wait for the writer, a 30 s busy
timeout so concurrent writers queue instead of failing, and transactions begun by us
(`BEGIN`) rather than by the sqlite3 module's guesswork. PostgreSQL (many hosts):
psycopg 3, a small pool with pre-ping so a database restart costs one retry, not a
broken pool. Both run at their default isolation (SQLite: serializable writes;
PostgreSQL: READ COMMITTED); `app.jobs.store` explains why that is enough.

An engine never crosses a fork (Celery's prefork pool forks after import): a process
that finds an engine built by its parent builds its own.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
POSTGRES_CONNECT_TIMEOUT_S = 10

_engines: dict[str, tuple[int, Engine]] = {}
_engines_lock = threading.Lock()


def as_url(target: str | Path) -> str:
    """A database URL from a URL or (for the embedded store) a SQLite file path."""
    text = str(target)
    return text if "://" in text else f"sqlite:///{Path(text)}"


def create_engine(url: str) -> Engine:
    """A new engine for `url` (no schema check; see `engine_for`)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    return sa.create_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=10,
                            connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S})


def _sqlite_engine(url: sa.URL) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # The sqlite3 module's own transaction handling off: SQLAlchemy's begin event
        # below says BEGIN, so every transaction starts where SQLAlchemy thinks it does.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL",
                       f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        connection.exec_driver_sql("BEGIN")

    return engine


def engine_for(target: str | Path) -> Engine:
    """This process's engine for `target` (URL or SQLite path), its schema brought to
    the newest migration the first time this process opens it."""
    from app.db.migrate import upgrade

    url = as_url(target)
    pid = os.getpid()
    with _engines_lock:
        entry = _engines.get(url)
        if entry is not None and entry[0] == pid:
            return entry[1]
        engine = create_engine(url)
        upgrade(engine)
        _engines[url] = (pid, engine)
        return engine


def dispose_all() -> None:
    """Close this process's pooled connections (tests, orderly shutdown)."""
    with _engines_lock:
        entries = list(_engines.values())
        _engines.clear()
    for pid, engine in entries:
        engine.dispose(close=pid == os.getpid())


def engine_or_exit(target: str | Path) -> Engine:
    """For entry points: the engine, or one line naming the unreachable database on
    stderr and exit 2 (not a traceback per process, not a crash loop)."""
    import sys

    from app.urls import mask_url

    try:
        return engine_for(target)
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        print(f"error: cannot open the database {mask_url(as_url(target))}: {reason}",
              file=sys.stderr)
        raise SystemExit(2) from None
