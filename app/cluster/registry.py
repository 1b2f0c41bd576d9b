"""The host registry: every host's manager heartbeat, readable by every host.

Each host upserts its row every health interval: its role (`web`, or `worker` for a
`--no-web` host), its pid and its manager's snapshot (mode, workers with state, pid,
restarts, memory, last seen). A reader judges a host by the database server's clock: a
host that has not written for LOST_AFTER_INTERVALS of its own intervals is `lost`.
"""
from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from app.cluster.clock import db_now
from app.db.schema import cluster_hosts

LOST_AFTER_INTERVALS = 3
# Lost hosts stay listed this long (so an operator sees what went), then their row goes.
FORGET_AFTER_S = 24 * 3600
MAX_SNAPSHOT_BYTES = 256 * 1024


class HostRegistry:
    def __init__(self, engine: Engine):
        self.engine = engine

    def publish(self, node: str, *, role: str, pid: int, interval: float,
                started_at: float, snapshot: dict[str, Any]) -> None:
        """Write this host's heartbeat (insert or replace its row)."""
        text = json.dumps(snapshot, sort_keys=True, default=str)
        if len(text) > MAX_SNAPSHOT_BYTES:
            raise ValueError(f"host snapshot of {len(text)} bytes is over the bound")
        with self.engine.begin() as conn:
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            values = {"role": role, "pid": pid, "interval": interval,
                      "started_at": started_at, "seen_at": db_now(conn), "snapshot": text}
            statement = dialect.insert(cluster_hosts).values(node=node, **values)
            conn.execute(statement.on_conflict_do_update(index_elements=["node"],
                                                         set_=values))

    def remove(self, node: str) -> None:
        """An orderly stop: the host leaves the registry instead of showing as lost."""
        with self.engine.begin() as conn:
            conn.execute(cluster_hosts.delete().where(cluster_hosts.c.node == node))

    def hosts(self) -> list[dict[str, Any]]:
        """Every known host, oldest name first, with `alive` and `seen_seconds_ago`."""
        t = cluster_hosts.c
        with self.engine.begin() as conn:
            now = db_now(conn)
            conn.execute(cluster_hosts.delete().where(t.seen_at < now - FORGET_AFTER_S))
            rows = conn.execute(sa.select(t.node, t.role, t.pid, t.interval, t.started_at,
                                          t.snapshot, now - t.seen_at)
                                .order_by(t.node)).all()
        return [_host(row) for row in rows]


def _host(row) -> dict[str, Any]:
    node, role, pid, interval, started_at, snapshot, age = row
    alive = age <= LOST_AFTER_INTERVALS * interval
    try:
        reported = json.loads(snapshot)
    except ValueError:
        reported = {}
    return {"node": node, "role": role, "pid": pid, "alive": alive,
            "state": "alive" if alive else "lost", "seen_seconds_ago": round(age, 3),
            "heartbeat_interval": interval, "started_at": started_at,
            "mode": reported.get("mode"), "workers": reported.get("workers") or []}
