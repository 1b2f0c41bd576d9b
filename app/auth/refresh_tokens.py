"""The `refresh_tokens` table: one row per refresh token, grouped in families (one per login).

A refresh token is good once. `use` marks it used in the same statement that checks it
is unused, so two concurrent refreshes with one token cannot both win. A token presented
again after its use is a replay (a stolen copy, or the thief's copy used first): the whole
family is revoked, so neither the thief nor the victim can go on refreshing from it.
"""
from __future__ import annotations

import enum
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.db import as_url, engine_for
from app.db.schema import refresh_tokens

table = refresh_tokens


class Use(enum.Enum):
    OK = "ok"              # unused until now; the caller may issue the next one
    REUSED = "reused"      # used before: the family is revoked now
    REVOKED = "revoked"    # its family was revoked, or it is unknown (pruned, or forged)


class RefreshTokenStore:
    def __init__(self, target: Path | str):
        self.url = as_url(target)

    @property
    def engine(self) -> Engine:
        return engine_for(self.url)

    def record(self, *, jti: str, family: str, user_id: str, expires_at: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.insert().values(jti=jti, family=family, user_id=user_id,
                                               created_at=time.time(), expires_at=expires_at))

    def use(self, jti: str) -> Use:
        now = time.time()
        with self.engine.begin() as conn:
            taken = conn.execute(table.update()
                                 .where(table.c.jti == jti, table.c.used_at.is_(None),
                                        table.c.revoked_at.is_(None))
                                 .values(used_at=now)).rowcount
            if taken == 1:
                return Use.OK
            row = conn.execute(sa.select(table.c.family, table.c.used_at, table.c.revoked_at)
                               .where(table.c.jti == jti)).first()
            if row is None or row.revoked_at is not None:
                return Use.REVOKED
            self._revoke_family(conn, row.family, now)
        return Use.REUSED

    def revoke_family(self, family: str) -> None:
        with self.engine.begin() as conn:
            self._revoke_family(conn, family, time.time())

    @staticmethod
    def _revoke_family(conn, family: str, now: float) -> None:
        conn.execute(table.update().where(table.c.family == family,
                                          table.c.revoked_at.is_(None))
                     .values(revoked_at=now))

    def family_of(self, jti: str) -> list[dict]:
        """Every token of `jti`'s family, oldest first (operators and tests)."""
        with self.engine.connect() as conn:
            family = sa.select(table.c.family).where(table.c.jti == jti).scalar_subquery()
            rows = conn.execute(sa.select(table).where(table.c.family == family)
                                .order_by(table.c.created_at))
            return [dict(row._mapping) for row in rows]

    def prune(self, now: float | None = None) -> int:
        """Forget tokens past their expiry (their JWT is refused anyway); bounds the table."""
        with self.engine.begin() as conn:
            return conn.execute(table.delete().where(
                table.c.expires_at < (now or time.time()))).rowcount
