"""The printer_profiles table (one row per user) behind a small repository class, so the
storage can move (e.g. to SQLAlchemy) without touching its callers."""
from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.db import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS printer_profiles (
    username   TEXT PRIMARY KEY,
    x          INTEGER NOT NULL,
    y          INTEGER NOT NULL,
    paper_size TEXT,
    updated_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class PrinterProfile:
    username: str
    x: int                 # px at 300 ppi, right is +
    y: int                 # px at 300 ppi, down is +
    paper_size: str | None
    updated_at: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("username")
        return data


class ProfileStore:
    def __init__(self, db_path: Path | str):
        self.db_path = Path(db_path)

    def _conn(self) -> sqlite3.Connection:
        return connect(self.db_path)

    def init_schema(self) -> None:
        conn = self._conn()
        try:
            conn.execute(SCHEMA)
        finally:
            conn.close()

    def get(self, username: str) -> PrinterProfile | None:
        conn = self._conn()
        try:
            row = conn.execute("SELECT * FROM printer_profiles WHERE username = ?",
                               (username,)).fetchone()
        finally:
            conn.close()
        if row is None:
            return None
        return PrinterProfile(row["username"], row["x"], row["y"], row["paper_size"],
                              row["updated_at"])

    def save(self, username: str, *, x: int, y: int, paper_size: str | None) -> PrinterProfile:
        profile = PrinterProfile(username, x, y, paper_size, time.time())
        conn = self._conn()
        try:
            conn.execute(
                "INSERT INTO printer_profiles (username, x, y, paper_size, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET x = excluded.x,"
                " y = excluded.y, paper_size = excluded.paper_size,"
                " updated_at = excluded.updated_at",
                (username, x, y, paper_size, profile.updated_at))
        finally:
            conn.close()
        return profile

    def delete(self, username: str) -> bool:
        conn = self._conn()
        try:
            cur = conn.execute("DELETE FROM printer_profiles WHERE username = ?", (username,))
        finally:
            conn.close()
        return cur.rowcount > 0
