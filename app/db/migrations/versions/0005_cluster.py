"""Many hosts: the reconciler lease, the host registry and commands for other hosts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cluster_leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
    )
    op.create_table(
        "cluster_hosts",
        sa.Column("node", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("interval", sa.Double, nullable=False),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("seen_at", sa.Double, nullable=False),
        sa.Column("snapshot", sa.Text, nullable=False),
        sa.CheckConstraint("role IN ('web', 'worker')", name="cluster_hosts_role"),
    )
    op.create_table(
        "cluster_commands",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("node", sa.Text, nullable=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("taken_at", sa.Double),
        sa.Column("finished_at", sa.Double),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("cluster_commands_node", "cluster_commands", ["node", "taken_at"])


def downgrade() -> None:
    op.drop_index("cluster_commands_node", table_name="cluster_commands")
    op.drop_table("cluster_commands")
    op.drop_table("cluster_hosts")
    op.drop_table("cluster_leases")
