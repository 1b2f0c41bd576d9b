"""The printer_profiles table (one row per user id; `app.db.schema.printer_profiles`,
built by migrations 0003 and 0004) behind a small repository class."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.db import as_url, engine_for
from app.db.schema import printer_profiles as table


@dataclass(frozen=True)
class PrinterProfile:
    user_id: str
    x: int                 # px at 300 ppi, right is +
    y: int                 # px at 300 ppi, down is +
    paper_size: str | None
    updated_at: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("user_id")
        return data


class ProfileStore:
    """Each call is its own transaction, on the store DATABASE_URL names."""

    def __init__(self, target: Path | str):
        self.url = as_url(target)

    @property
    def engine(self) -> Engine:
        return engine_for(self.url)

    def get(self, user_id: str) -> PrinterProfile | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.user_id == user_id)).first()
        return PrinterProfile(**row._mapping) if row is not None else None

    def save(self, user_id: str, *, x: int, y: int, paper_size: str | None) -> PrinterProfile:
        profile = PrinterProfile(user_id, x, y, paper_size, time.time())
        values = asdict(profile)
        with self.engine.begin() as conn:
            # Update first; insert when there was nothing to update. Two concurrent first
            # saves of one user: the loser's insert fails, and it updates instead.
            changed = conn.execute(table.update().where(table.c.user_id == user_id)
                                   .values(**values)).rowcount
            if not changed:
                try:
                    with conn.begin_nested():
                        conn.execute(table.insert().values(**values))
                except sa.exc.IntegrityError:
                    conn.execute(table.update().where(table.c.user_id == user_id)
                                 .values(**values))
        return profile

    def delete(self, user_id: str) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(table.delete().where(table.c.user_id == user_id)).rowcount > 0
