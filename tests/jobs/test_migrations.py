"""Schema migrations: a fresh database, one made by the pre-migration code, concurrent
starts, and `flask db ...` from the shell."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.auth.users import UserStore
from app.db import create_engine, engine_for
from app.db.migrate import current_revision, head_revision
from app.db.schema import metadata
from app.jobs.store import JobStore
from tests.conftest import make_settings
from tests.database import current_database_url
from tests.jobs.conftest import ROOT

# The schema exactly as the code before migrations created it (SQLite only).
PRE_MIGRATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, kind TEXT NOT NULL, params TEXT NOT NULL,
    queue TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '', mode TEXT, worker TEXT, worker_node TEXT,
    task_id TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, lease TEXT,
    created_at REAL NOT NULL, dispatched_at REAL, started_at REAL, finished_at REAL,
    heartbeat_at REAL, output_path TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""


@pytest.fixture
def url(tmp_path) -> str:
    return current_database_url() or f"sqlite:///{tmp_path / 'fresh.sqlite3'}"


def test_fresh_database_is_upgraded_to_the_schema_the_code_queries(url):
    engine = engine_for(url)
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], diff  # migrations and app.db.schema describe the same tables
    assert {"jobs", "users", "alembic_version"} <= set(sa.inspect(engine).get_table_names())


@pytest.mark.backends("sqlite")
def test_pre_migration_database_is_adopted_in_place(tmp_path):
    path = tmp_path / "instance" / "app.sqlite3"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(PRE_MIGRATION_SCHEMA)
    conn.execute("INSERT INTO users VALUES ('root', 'hash', 'admin', 1.0)")
    conn.execute(
        "INSERT INTO jobs (id, owner, kind, params, queue, status, created_at, output_path)"
        " VALUES ('abc', 'root', 'calibration', '{}', 'default', 'succeeded', 2.0, ?)",
        (f"{tmp_path}/instance/outputs/abc.pdf",))
    conn.commit()
    conn.close()

    settings = make_settings(tmp_path)
    job = JobStore(settings.database_url).get("abc")  # opening the store upgrades it
    assert job.status == "succeeded" and job.output_path == "outputs/abc.pdf"
    assert settings.in_storage(job.output_path) == settings.outputs_dir / "abc.pdf"
    assert UserStore(settings.database_url).get("root").is_admin
    with create_engine(settings.database_url).connect() as conn:
        assert current_revision(conn) == head_revision()


@pytest.mark.backends("sqlite")
def test_database_with_only_the_users_table_gets_the_jobs_table(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(PRE_MIGRATION_SCHEMA.split(";")[0])
    conn.close()
    store = JobStore(path)
    assert store.create(owner="a", kind="calibration", params={}, queue="default")
    assert set(sa.inspect(store.engine).get_table_names()) >= {"jobs", "users"}


OPEN_AND_CREATE = """
import os, sys
from app.jobs.store import JobStore
JobStore(sys.argv[1]).create(owner=f"p{os.getpid()}", kind="calibration", params={},
                             queue="default")
"""


def test_concurrent_first_starts_do_not_race(url):
    """Four processes open a brand-new database at once: one migrates, all work."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AND_CREATE, url], cwd=ROOT,
                              env=env, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == \
            [(head_revision(),)]
        assert conn.execute(sa.text("SELECT COUNT(*) FROM jobs")).scalar_one() == 4
    engine.dispose()


def flask(settings, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "STORAGE_DIR")}
    env.update(INSTANCE_PATH=str(settings.INSTANCE_PATH), APP_ENV="testing",
               JWT_SECRET_KEY=settings.JWT_SECRET_KEY, EMBEDDED_REDIS="false",
               SCM_ENV_FILE="", PYTHONPATH=str(ROOT))
    if settings.DATABASE_URL:
        env["DATABASE_URL"] = settings.DATABASE_URL
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "db", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_flask_db_upgrade_from_the_shell(tmp_path):
    settings = make_settings(tmp_path)
    upgraded = flask(settings, "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"at revision {head_revision()}" in upgraded.stdout
    with create_engine(settings.database_url).connect() as conn:
        assert current_revision(conn) == head_revision()


def test_flask_db_current_and_history(tmp_path):
    from app import create_app

    runner = create_app(make_settings(tmp_path)).test_cli_runner()
    current = runner.invoke(args=["db", "current"])
    assert current.exit_code == 0 and "(up to date)" in current.output, current.output
    history = runner.invoke(args=["db", "history"])
    assert history.exit_code == 0 and "<base> -> 0001" in history.output
    assert f"-> {head_revision()}" in history.output
