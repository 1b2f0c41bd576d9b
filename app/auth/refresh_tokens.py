"""The `refresh_tokens` table: one row per refresh token, grouped in families (one per login).

A refresh token is good once. `use` marks it used in the same statement that checks it
is unused, so two concurrent refreshes with one token cannot both win. A token presented
again after its use is a replay (a stolen copy, or the thief's copy used first): the whole
family is revoked, so neither the thief nor the victim can go on refreshing from it.

Bounded: a family keeps two rows (the token used last and the current one); older used
tokens are deleted, and one of them presented again is still a replay, because only a
signed token names its family and a family with rows left is alive. A user keeps at most
`MAX_SESSIONS` families (the oldest go at the next login); expired rows go at login.
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
MAX_SESSIONS = 20  # sign-ins (families) a user keeps; a browser tab is one


class Use(enum.Enum):
    OK = "ok"              # unused until now; the caller may issue the next one
    REUSED = "reused"      # used before: the family is revoked now
    REVOKED = "revoked"    # its family was revoked, or it is unknown (pruned, or forged)


class RefreshTokenStore:
    def __init__(self, target: Path | str, *, max_sessions: int = MAX_SESSIONS):
        self.url = as_url(target)
        self.max_sessions = max_sessions

    @property
    def engine(self) -> Engine:
        return engine_for(self.url)

    def record(self, *, jti: str, family: str, user_id: str, expires_at: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(table.insert().values(jti=jti, family=family, user_id=user_id,
                                               created_at=time.time(), expires_at=expires_at))

    def use(self, jti: str, family: str) -> Use:
        now = time.time()
        # One revoked row poisons the family: a token recorded just after a revocation
        # (the winner of a race with a replay) is refused too.
        sibling = table.alias("sibling")
        poisoned = sa.exists().where(sibling.c.family == family,
                                     sibling.c.revoked_at.is_not(None))
        with self.engine.begin() as conn:
            taken = conn.execute(table.update()
                                 .where(table.c.jti == jti, table.c.family == family,
                                        table.c.used_at.is_(None), ~poisoned)
                                 .values(used_at=now)).rowcount
            if taken == 1:
                conn.execute(table.delete().where(table.c.family == family, table.c.jti != jti,
                                                  table.c.used_at.is_not(None)))
                return Use.OK
            rows = conn.execute(sa.select(table.c.revoked_at)
                                .where(table.c.family == family)).scalars().all()
            if not rows or any(at is not None for at in rows):
                return Use.REVOKED
            self._revoke_family(conn, family, now)
        return Use.REUSED

    def revoke_family(self, family: str) -> None:
        with self.engine.begin() as conn:
            self._revoke_family(conn, family, time.time())

    @staticmethod
    def _revoke_family(conn, family: str, now: float) -> None:
        conn.execute(table.update().where(table.c.family == family,
                                          table.c.revoked_at.is_(None))
                     .values(revoked_at=now))

    def family(self, family: str) -> list[dict]:
        """The rows of one family, oldest first (operators and tests)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.family == family)
                                .order_by(table.c.created_at))
            return [dict(row._mapping) for row in rows]

    def keep_newest_families(self, user_id: str) -> int:
        """Forget all but the user's `max_sessions` latest sign-ins (their tokens are refused)."""
        newest = sa.func.max(table.c.created_at)
        old = (sa.select(table.c.family).where(table.c.user_id == user_id)
               .group_by(table.c.family).order_by(newest.desc())
               .offset(self.max_sessions))
        with self.engine.begin() as conn:
            return conn.execute(table.delete().where(table.c.user_id == user_id,
                                                     table.c.family.in_(old))).rowcount

    def prune(self, now: float | None = None) -> int:
        """Forget tokens past their expiry (their JWT is refused anyway); bounds the table."""
        with self.engine.begin() as conn:
            return conn.execute(table.delete().where(
                table.c.expires_at < (now or time.time()))).rowcount
