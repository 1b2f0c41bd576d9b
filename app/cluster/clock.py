"""The database server's clock, as seconds since the epoch (double precision).

Hosts' clocks drift and may jump; every host of a cluster talks to the same database, so
lease expiry and heartbeat age are judged by its clock alone.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

# clock_timestamp(), not now(): now() is the start of the transaction, and a renewal
# that waited for a row lock must not stamp a time from before it waited.
_POSTGRES_NOW = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"
_SQLITE_NOW = "((julianday('now') - 2440587.5) * 86400.0)"


def db_now(bind: Engine | Connection) -> sa.ColumnElement[float]:
    """A SQL expression for the server's current time in epoch seconds."""
    name = bind.dialect.name
    if name == "postgresql":
        return sa.literal_column(_POSTGRES_NOW, sa.Double)
    if name == "sqlite":
        return sa.literal_column(_SQLITE_NOW, sa.Double)
    raise ValueError(f"no server clock for the {name} dialect")


def read_now(conn: Connection) -> float:
    return float(conn.execute(sa.select(db_now(conn))).scalar_one())
