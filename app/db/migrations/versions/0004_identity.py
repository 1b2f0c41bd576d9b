"""Identity: users keyed by an immutable id, a token version per user, refresh-token
families, and jobs and printer profiles owned by the user id instead of the name.

Existing users get a random id. Jobs and profiles are mapped name -> id. A job whose
owner no longer exists keeps its old name behind a `deleted:` prefix (no id and no user
name contains a colon), so a user re-created under the same name never sees it; a
profile of a user that no longer exists has nobody to serve and is dropped.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ORPHAN_PREFIX = "deleted:"


def _users_table(keyed_by_id: bool) -> sa.Table:
    """The users table before (keyed by name) or after (keyed by id) this revision,
    for SQLite's table rebuild (batch mode copies rows into this shape)."""
    columns = [
        sa.Column("id", sa.Text, primary_key=keyed_by_id, nullable=not keyed_by_id),
        sa.Column("username", sa.Text, primary_key=not keyed_by_id, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("role IN ('admin', 'user')", name="users_role"),
    ]
    if keyed_by_id:
        columns.append(sa.UniqueConstraint("username", name="users_username"))
    return sa.Table("users", sa.MetaData(), *columns)


def _give_users_ids() -> None:
    op.add_column("users", sa.Column("id", sa.Text))
    op.add_column("users", sa.Column("token_version", sa.Integer, nullable=False,
                                     server_default="0"))
    bind = op.get_bind()
    names = bind.execute(sa.text("SELECT username FROM users")).scalars().all()
    for name in names:
        bind.execute(sa.text("UPDATE users SET id = :id WHERE username = :name"),
                     {"id": uuid.uuid4().hex, "name": name})


def _key_users_by_id() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("users", recreate="always",
                                  copy_from=_users_table(keyed_by_id=True)):
            pass
        return
    op.drop_constraint("users_pkey", "users", type_="primary")
    op.alter_column("users", "id", nullable=False)
    op.create_primary_key("users_pkey", "users", ["id"])
    op.create_unique_constraint("users_username", "users", ["username"])


def _own_jobs_by_id() -> None:
    op.execute(sa.text(
        "UPDATE jobs SET owner = (SELECT users.id FROM users WHERE users.username = jobs.owner)"
        " WHERE owner IN (SELECT username FROM users)"))
    op.execute(sa.text(
        f"UPDATE jobs SET owner = '{ORPHAN_PREFIX}' || owner"
        " WHERE owner NOT IN (SELECT id FROM users)"))


def _key_profiles_by_id() -> None:
    op.execute(sa.text(
        "DELETE FROM printer_profiles WHERE username NOT IN (SELECT username FROM users)"))
    op.execute(sa.text(
        "UPDATE printer_profiles SET username ="
        " (SELECT users.id FROM users WHERE users.username = printer_profiles.username)"))
    with op.batch_alter_table("printer_profiles") as batch:
        batch.alter_column("username", new_column_name="user_id")


def _create_refresh_tokens() -> None:
    op.create_table(
        "refresh_tokens",
        sa.Column("jti", sa.Text, primary_key=True),
        sa.Column("family", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("used_at", sa.Double),
        sa.Column("revoked_at", sa.Double),
    )
    op.create_index("refresh_tokens_family", "refresh_tokens", ["family"])
    op.create_index("refresh_tokens_user", "refresh_tokens", ["user_id"])
    op.create_index("refresh_tokens_expires", "refresh_tokens", ["expires_at"])


def upgrade() -> None:
    _give_users_ids()
    _own_jobs_by_id()
    _key_profiles_by_id()
    _key_users_by_id()
    _create_refresh_tokens()


def downgrade() -> None:
    # Back to names: every token issued since becomes unusable (the old code reads `sub`
    # as a name), which is the safe direction.
    op.drop_table("refresh_tokens")
    op.execute(sa.text(
        "UPDATE jobs SET owner = (SELECT users.username FROM users WHERE users.id = jobs.owner)"
        " WHERE owner IN (SELECT id FROM users)"))
    op.execute(sa.text(
        f"UPDATE jobs SET owner = substr(owner, {len(ORPHAN_PREFIX) + 1})"
        f" WHERE owner LIKE '{ORPHAN_PREFIX}%'"))
    op.execute(sa.text(
        "UPDATE printer_profiles SET user_id ="
        " (SELECT users.username FROM users WHERE users.id = printer_profiles.user_id)"))
    with op.batch_alter_table("printer_profiles") as batch:
        batch.alter_column("user_id", new_column_name="username")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("users", recreate="always",
                                  copy_from=_users_table(keyed_by_id=False)) as batch:
            batch.drop_column("token_version")
            batch.drop_column("id")
        return
    op.drop_constraint("users_username", "users", type_="unique")
    op.drop_constraint("users_pkey", "users", type_="primary")
    op.create_primary_key("users_pkey", "users", ["username"])
    op.drop_column("users", "token_version")
    op.drop_column("users", "id")
