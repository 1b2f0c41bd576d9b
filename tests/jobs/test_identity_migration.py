"""Migration 0004 (identity) on a database with data, on SQLite and PostgreSQL: users get
ids, jobs and profiles move from names to ids, and what belonged to a user who no longer
exists stays out of reach of a new user of the same name."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command

from app.auth.users import UserStore
from app.db import create_engine
from app.db.migrate import alembic_config, current_revision, head_revision, upgrade
from app.jobs.store import JobStore
from app.profiles.store import ProfileStore
from tests.database import current_database_url

USERS_0003 = "INSERT INTO users (username, password_hash, role, created_at) VALUES " \
             "('dave', 'h', 'admin', 1.0), ('erin', 'h', 'user', 2.0)"
JOB_0003 = "INSERT INTO jobs (id, owner, kind, params, queue, status, created_at)" \
           " VALUES (:id, :owner, 'calibration', '{}', 'default', 'succeeded', 3.0)"
PROFILE_0003 = "INSERT INTO printer_profiles (username, x, y, updated_at) VALUES (:name, 4, 5, 6.0)"


@pytest.fixture
def url(tmp_path) -> str:
    return current_database_url() or f"sqlite:///{tmp_path / 'identity.sqlite3'}"


def _database_at_0003(url: str) -> sa.Engine:
    engine = create_engine(url)
    assert upgrade(engine, "0003") == "0003"
    with engine.begin() as conn:
        conn.execute(sa.text(USERS_0003))
        for job_id, owner in (("j-dave", "dave"), ("j-erin", "erin"), ("j-ghost", "ghost")):
            conn.execute(sa.text(JOB_0003), {"id": job_id, "owner": owner})
        for name in ("dave", "ghost"):
            conn.execute(sa.text(PROFILE_0003), {"name": name})
    return engine


def test_0004_moves_jobs_and_profiles_from_names_to_ids(url):
    engine = _database_at_0003(url)
    assert upgrade(engine) == head_revision()  # 0004 and any later revision
    users, jobs, profiles = UserStore(url), JobStore(url), ProfileStore(url)
    dave, erin = users.get("dave"), users.get("erin")
    assert dave.is_admin and not erin.is_admin and dave.id != erin.id
    assert dave.token_version == erin.token_version == 0
    assert [job.id for job in jobs.list(owner=dave.id)] == ["j-dave"]
    assert [job.id for job in jobs.list(owner=erin.id)] == ["j-erin"]
    assert jobs.get("j-ghost").owner == "deleted:ghost"
    assert profiles.get(dave.id).x == 4
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM printer_profiles")).scalar() == 1

    # A user created under the gone user's name owns nothing of theirs.
    ghost = users.create("ghost", "ghost-password-1")
    assert jobs.list(owner=ghost.id) == [] and profiles.get(ghost.id) is None
    with pytest.raises(sa.exc.IntegrityError):  # names stay unique: the login looks users up by name
        with engine.begin() as conn:
            conn.execute(sa.text(USERS_0003))


def test_0004_downgrades_to_names(url):
    engine = _database_at_0003(url)
    upgrade(engine)
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), "0003")
        conn.commit()
        assert current_revision(conn) == "0003"
        owners = dict(conn.execute(sa.text("SELECT id, owner FROM jobs")).all())
        names = conn.execute(sa.text("SELECT username FROM printer_profiles")).scalars().all()
        columns = {column["name"] for column in sa.inspect(conn).get_columns("users")}
    assert owners == {"j-dave": "dave", "j-erin": "erin", "j-ghost": "ghost"}
    assert names == ["dave"] and "id" not in columns and "token_version" not in columns
    assert upgrade(engine) == head_revision()  # and up again
