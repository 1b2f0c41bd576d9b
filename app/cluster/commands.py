"""Admin commands for another host's manager, through the database.

The host an operator asked (`start`, `stop`, `restart` with `host`) is polled by that
host's cluster agent about twice a second; it runs the command on its own manager and
writes the answer into the row, which the asking HTTP thread waits for. A row is taken
by a compare-and-set on `taken_at`, so a command runs at most once even if two processes
of that host poll. Old rows are deleted as new ones are written (bounded table).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.cluster.clock import db_now
from app.db.schema import cluster_commands

KEEP_S = 3600          # answered or abandoned commands are kept this long
POLL_S = 0.1           # how often the asker looks for the answer


class HostCommandError(RuntimeError):
    """The other host answered with an error, or did not answer in time."""

    def __init__(self, http_status: int, code: str, message: str):
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message

    def as_json(self) -> str:
        return json.dumps({"status": self.http_status, "code": self.code,
                           "message": self.message})

    @classmethod
    def from_json(cls, text: str) -> HostCommandError:
        try:
            data = json.loads(text)
            return cls(int(data["status"]), str(data["code"]), str(data["message"]))
        except (ValueError, KeyError, TypeError):
            return cls(502, "host_error", text[:500])


@dataclass(frozen=True)
class Command:
    id: int
    op: str
    args: dict[str, Any]


class CommandBoard:
    def __init__(self, engine: Engine):
        self.engine = engine

    def send(self, node: str, op: str, args: dict[str, Any], timeout: float) -> dict:
        """Ask `node` to run `op(**args)`; its answer, or HostCommandError."""
        t = cluster_commands.c
        with self.engine.begin() as conn:
            conn.execute(cluster_commands.delete().where(t.created_at < db_now(conn) - KEEP_S))
            command_id = conn.execute(
                cluster_commands.insert().values(node=node, op=op, args=json.dumps(args),
                                                 created_at=db_now(conn))
                .returning(t.id)).scalar_one()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(t.finished_at, t.result, t.error)
                                   .where(t.id == command_id)).first()
            if row is not None and row[0] is not None:
                if row[2]:
                    raise HostCommandError.from_json(row[2])
                return json.loads(row[1])
            time.sleep(POLL_S)
        self._abandon(command_id)
        raise HostCommandError(504, "host_timeout",
                               f"host {node} did not answer {op} within {timeout:.0f}s")

    def take(self, node: str) -> list[Command]:
        """(The addressed host) The commands waiting for it, each now taken."""
        t = cluster_commands.c
        taken = []
        with self.engine.begin() as conn:
            waiting = conn.execute(sa.select(t.id, t.op, t.args)
                                   .where(t.node == node, t.taken_at.is_(None))
                                   .order_by(t.id).limit(20)).all()
            for command_id, op, args in waiting:
                won = conn.execute(cluster_commands.update()
                                   .where(t.id == command_id, t.taken_at.is_(None))
                                   .values(taken_at=db_now(conn))).rowcount
                if won:
                    taken.append(Command(command_id, op, json.loads(args)))
        return taken

    def finish(self, command_id: int, *, result: dict | None = None,
               error: HostCommandError | None = None) -> None:
        values: dict[str, Any] = {"result": json.dumps(result, default=str)} if error is None \
            else {"error": error.as_json()}
        with self.engine.begin() as conn:
            conn.execute(cluster_commands.update().where(cluster_commands.c.id == command_id)
                         .values(finished_at=db_now(conn), **values))

    def _abandon(self, command_id: int) -> None:
        # Not taken yet: it must not run later, when nobody waits for it any more.
        t = cluster_commands.c
        with self.engine.begin() as conn:
            conn.execute(cluster_commands.update()
                         .where(t.id == command_id, t.taken_at.is_(None))
                         .values(taken_at=db_now(conn), finished_at=db_now(conn),
                                 error=HostCommandError(504, "host_timeout",
                                                        "abandoned").as_json()))
