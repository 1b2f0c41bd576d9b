"""Baseline: the jobs and users tables as the embedded SQLite store made them.

A database created before migrations existed already has some or all of these; only
what is missing is created, so such a database is adopted in place (as if stamped).

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _jobs_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("progress", sa.Double, nullable=False, server_default="0"),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("mode", sa.Text),
        sa.Column("worker", sa.Text),
        sa.Column("worker_node", sa.Text),
        sa.Column("task_id", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("dispatched_at", sa.Double),
        sa.Column("started_at", sa.Double),
        sa.Column("finished_at", sa.Double),
        sa.Column("heartbeat_at", sa.Double),
        sa.Column("output_path", sa.Text),
    ]


JOBS_INDEXES = {"jobs_owner_created": ["owner", "created_at"], "jobs_status": ["status"]}


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "jobs" not in tables:
        op.create_table("jobs", *_jobs_columns())
        existing = set()
    else:
        existing = {index["name"] for index in inspector.get_indexes("jobs")}
    for name, columns in JOBS_INDEXES.items():
        if name not in existing:
            op.create_index(name, "jobs", columns)
    if "users" not in tables:
        op.create_table(
            "users",
            sa.Column("username", sa.Text, primary_key=True),
            sa.Column("password_hash", sa.Text, nullable=False),
            sa.Column("role", sa.Text, nullable=False),
            sa.Column("created_at", sa.Double, nullable=False),
            sa.CheckConstraint("role IN ('admin', 'user')", name="users_role"),
        )


def downgrade() -> None:
    op.drop_table("users")
    op.drop_table("jobs")
