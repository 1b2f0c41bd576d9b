"""A lease on a cluster-wide role in the database: one holder at a time, fenced.

The row `cluster_leases(name)` says who holds the role until when, and a fencing token
that grows by one each time the role changes hands. A holder renews it (every third of
its length); once it has expired any other host takes it with the next token.

Why only one host can hold it, on PostgreSQL (READ COMMITTED) and SQLite:
* Taking and renewing are one statement each,
  `UPDATE ... SET holder = me, expires_at = now + ttl, token = token + (holder <> me)
   WHERE name = :name AND (holder = me OR expires_at < now)`,
  with `now` the database server's clock (`clock.db_now`), so hosts' clocks never matter.
* On PostgreSQL two hosts racing for an expired lease both try to update the same row;
  the second waits for the first's row lock and then re-checks the WHERE clause against
  the row the first committed (READ COMMITTED re-evaluation of an UPDATE): the holder is
  no longer expired and not the second host, so it updates nothing. SQLite runs one
  writer at a time, so the second statement sees the first's result outright.
* The first row is made by `INSERT ... ON CONFLICT DO NOTHING`: of two first comers one
  inserts, the other then goes through the UPDATE above.
* A holder that stalls past its expiry (a long GC pause, a frozen VM) may still believe
  it holds the role for up to one renewal period; its next renewal fails and it stops.
  Work done under the role must not rely on the lease alone: the reconciler's changes
  are compare-and-set in the job store, and the token tells a stale holder's writes
  apart where that matters.
"""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from app.cluster.clock import db_now
from app.db.schema import cluster_leases

RECONCILER = "jobs-reconciler"


@dataclass(frozen=True)
class LeaseState:
    name: str
    holder: str
    token: int
    expires_in: float   # seconds left, by the database's clock (negative: expired)


class Lease:
    def __init__(self, engine: Engine, name: str, holder: str, ttl: float):
        if ttl <= 0:
            raise ValueError("a lease needs a positive length")
        self.engine, self.name, self.holder, self.ttl = engine, name, holder, ttl
        self.token: int | None = None   # the token while we hold it

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    def acquire(self) -> int | None:
        """Take or renew the lease; its fencing token while we hold it, else None."""
        with self.engine.begin() as conn:
            self._insert_if_missing(conn)
            now = db_now(conn)
            t = cluster_leases.c
            token = conn.execute(
                cluster_leases.update()
                .where(t.name == self.name,
                       sa.or_(t.holder == self.holder, t.expires_at < now))
                .values(holder=self.holder, expires_at=now + self.ttl,
                        token=sa.case((t.holder == self.holder, t.token), else_=t.token + 1),
                        acquired_at=sa.case((t.holder == self.holder, t.acquired_at),
                                            else_=now))
                .returning(t.token)).scalar_one_or_none()
        self.token = None if token is None else int(token)
        return self.token

    def release(self) -> None:
        """Give it up now (an orderly stop), so another host need not wait for expiry."""
        with self.engine.begin() as conn:
            t = cluster_leases.c
            conn.execute(cluster_leases.update()
                         .where(t.name == self.name, t.holder == self.holder)
                         .values(expires_at=db_now(conn) - 1))
        self.token = None

    def state(self) -> LeaseState | None:
        """Who holds it now (whoever that is), or None before anyone took it."""
        with self.engine.connect() as conn:
            t = cluster_leases.c
            row = conn.execute(sa.select(t.holder, t.token, t.expires_at - db_now(conn))
                               .where(t.name == self.name)).first()
        if row is None:
            return None
        return LeaseState(self.name, row[0], int(row[1]), float(row[2]))

    def _insert_if_missing(self, conn: Connection) -> None:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        now = db_now(conn)
        # Born expired: the UPDATE that follows is the one place that takes a lease.
        conn.execute(dialect.insert(cluster_leases)
                     .values(name=self.name, holder="", token=0, acquired_at=now,
                             expires_at=now - 1)
                     .on_conflict_do_nothing(index_elements=["name"]))
