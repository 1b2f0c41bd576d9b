"""The job store backends the tests run on: SQLite files, or schemas in a PostgreSQL
database made for this test session on 127.0.0.1:5432 (user postgres, trust)."""
from __future__ import annotations

import os
import secrets
from urllib.parse import quote

import pytest
import sqlalchemy as sa

BACKENDS = ("sqlite", "postgresql")
POSTGRES_ADMIN_URL = os.environ.get(
    "SCM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

_current: dict[str, str | None] = {"url": None}


def current_database_url() -> str | None:
    """DATABASE_URL of the running test's PostgreSQL schema; None: SQLite."""
    return _current["url"]


def use(url: str | None) -> None:
    _current["url"] = url


def backend_names(definition) -> tuple[str, ...]:
    """Both backends, except for slow and end-to-end tests (SQLite only), unless a test
    names its backends with @pytest.mark.backends(...)."""
    marker = definition.get_closest_marker("backends")
    if marker is not None:
        return tuple(marker.args)
    if definition.get_closest_marker("slow") or definition.path.name.endswith("_e2e.py"):
        return ("sqlite",)
    return BACKENDS


class PostgresServer:
    """The session's own database; schemas in it are handed out per test."""

    def __init__(self, admin: sa.Engine, name: str):
        self.admin, self.name = admin, name
        self.url = admin.url.set(database=name)
        self.engine = sa.create_engine(self.url, poolclass=sa.NullPool)

    @classmethod
    def create(cls) -> PostgresServer:
        admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT",
                                 poolclass=sa.NullPool, connect_args={"connect_timeout": 5})
        name = f"scm_test_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            message = f"PostgreSQL at {admin.url.render_as_string()} unreachable: {exc.orig}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        return cls(admin, name)

    def url_for(self, schema: str | None = None) -> str:
        url = self.url.render_as_string(hide_password=False)
        if schema is None:
            return url
        return f"{url}?options={quote(f'-csearch_path={schema}', safe='')}"

    def new_schema(self) -> tuple[str, str]:
        schema = f"t_{secrets.token_hex(6)}"
        with self.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        return schema, self.url_for(schema)

    def drop_schema(self, schema: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        except sa.exc.DBAPIError:
            pass  # a straggler still holds it: the database goes at the end anyway

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def set_job_columns(store, job_id: str, **values) -> None:
    """Force columns of one job row (tests that age timestamps or fake outcomes)."""
    from app.db.schema import jobs

    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))
