"""Alembic environment: always online, on the connection `app.db.migrate` hands over
(it holds the migration lock)."""
from __future__ import annotations

from alembic import context

from app.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through app.db.migrate (or `flask db upgrade`)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
