"""The tables of the job and user store, as SQLAlchemy Core objects.

This is the shape the code queries; the migrations in `app/db/migrations` build it (a
test checks that a fresh `upgrade head` matches this metadata). Change both together:
a new column here needs a new migration there.

Timestamps are seconds since the epoch in double precision (`time.time()`), as the
embedded SQLite store always kept them.
"""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text, nullable=False),  # the owner's users.id
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON, sorted keys
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
    sa.Column("output_path", sa.Text),  # relative to STORAGE_DIR
    sa.Index("jobs_owner_created", "owner", "created_at"),
    sa.Index("jobs_status", "status"),
)

# Identity (issue 12): a user is its immutable `id` (random, never reused), not its name.
# Tokens carry the id and `token_version`; changing the password or role, or deleting the
# user, bumps the version (or removes the row), so every older token stops working.
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("username", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("token_version", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("role IN ('admin', 'user')", name="users_role"),
    sa.UniqueConstraint("username", name="users_username"),
)

# One row per refresh token issued. Each refresh uses its token up (used_at) and issues
# the next one in the same family (one family per login); presenting a used token again
# revokes the whole family.
refresh_tokens = sa.Table(
    "refresh_tokens", metadata,
    sa.Column("jti", sa.Text, primary_key=True),
    sa.Column("family", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("used_at", sa.Double),
    sa.Column("revoked_at", sa.Double),
    sa.Index("refresh_tokens_family", "family"),
    sa.Index("refresh_tokens_user", "user_id"),
    sa.Index("refresh_tokens_expires", "expires_at"),
)

# One saved printer profile per user (issue 10): the back-page offset the user measured
# with a calibration sheet, and the paper their printer takes. Keyed by user id.
printer_profiles = sa.Table(
    "printer_profiles", metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("x", sa.Integer, nullable=False),
    sa.Column("y", sa.Integer, nullable=False),
    sa.Column("paper_size", sa.Text),
    sa.Column("updated_at", sa.Double, nullable=False),
)

# --- many hosts (app/cluster) ------------------------------------------------------------
# Leases on cluster-wide roles (today one: the jobs reconciler). `token` grows by one on
# every takeover (a fencing token); times come from the database server's clock.
cluster_leases = sa.Table(
    "cluster_leases", metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("holder", sa.Text, nullable=False),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("acquired_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
)

# One row per host: its manager's heartbeat (`snapshot`: JSON of its workers and mode),
# written every `interval` seconds; `seen_at` is the database server's clock.
cluster_hosts = sa.Table(
    "cluster_hosts", metadata,
    sa.Column("node", sa.Text, primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("interval", sa.Double, nullable=False),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("seen_at", sa.Double, nullable=False),
    sa.Column("snapshot", sa.Text, nullable=False),
    sa.CheckConstraint("role IN ('web', 'worker')", name="cluster_hosts_role"),
)

# Admin commands for another host's manager (start, stop, restart), which polls for its
# own; the answer (JSON) or the error comes back in the same row.
cluster_commands = sa.Table(
    "cluster_commands", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("op", sa.Text, nullable=False),
    sa.Column("args", sa.Text, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("taken_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("result", sa.Text),
    sa.Column("error", sa.Text),
    sa.Index("cluster_commands_node", "node", "taken_at"),
)
