"""The users table: names, hashed passwords and roles, in the instance SQLite file."""
from __future__ import annotations

import functools
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from app.db import connect

ROLES = ("admin", "user")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at    REAL NOT NULL
)
"""



@functools.cache
def _dummy_hash() -> str:
    # Checking a password against this costs the same time as a real check, so a
    # login for an unknown name is not measurably faster than a wrong password.
    return generate_password_hash("not-a-real-password")


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    created_at: float

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict:
        return {"username": self.username, "role": self.role, "created_at": self.created_at}


def validate_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise UserError("username must be 1-64 characters: letters, digits, _ . @ -, "
                        "starting with a letter or digit")
    return username


def validate_password(password: str) -> str:
    if not isinstance(password, str) or not \
            MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise UserError(f"password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} "
                        "characters")
    return password


class UserStore:
    """Small repository over the `users` table; one connection per call keeps it thread-safe."""

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

    def get(self, username: str) -> User | None:
        conn = self._conn()
        try:
            row = conn.execute("SELECT username, role, created_at FROM users WHERE username = ?",
                               (username,)).fetchone()
        finally:
            conn.close()
        return User(row["username"], row["role"], row["created_at"]) if row else None

    def list(self) -> list[User]:
        conn = self._conn()
        try:
            rows = conn.execute(
                "SELECT username, role, created_at FROM users ORDER BY username").fetchall()
        finally:
            conn.close()
        return [User(r["username"], r["role"], r["created_at"]) for r in rows]

    def create(self, username: str, password: str, role: str = "user", *,
               if_missing: bool = False) -> User | None:
        """Add a user. With `if_missing`, an existing name is left alone and None returned."""
        validate_username(username)
        validate_password(password)
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        if if_missing and self.get(username) is not None:
            return None  # skip the (slow) hash when there is nothing to do
        now = time.time()
        conn = self._conn()
        try:
            verb = "INSERT OR IGNORE" if if_missing else "INSERT"
            cur = conn.execute(
                f"{verb} INTO users (username, password_hash, role, created_at) "
                "VALUES (?, ?, ?, ?)",
                (username, generate_password_hash(password), role, now))
        except sqlite3.IntegrityError:
            raise UserError(f"user {username!r} already exists") from None
        finally:
            conn.close()
        if cur.rowcount == 0:  # another process created it between our check and insert
            return None
        return User(username, role, now)

    def set_password(self, username: str, password: str) -> None:
        validate_password(password)
        conn = self._conn()
        try:
            cur = conn.execute("UPDATE users SET password_hash = ? WHERE username = ?",
                               (generate_password_hash(password), username))
        finally:
            conn.close()
        if cur.rowcount == 0:
            raise UserError(f"no user {username!r}")

    def set_role(self, username: str, role: str) -> None:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        conn = self._conn()
        try:
            cur = conn.execute("UPDATE users SET role = ? WHERE username = ?", (role, username))
        finally:
            conn.close()
        if cur.rowcount == 0:
            raise UserError(f"no user {username!r}")

    def delete(self, username: str) -> bool:
        conn = self._conn()
        try:
            cur = conn.execute("DELETE FROM users WHERE username = ?", (username,))
        finally:
            conn.close()
        return cur.rowcount > 0

    def authenticate(self, username: str, password: str) -> User | None:
        conn = self._conn()
        try:
            row = conn.execute(
                "SELECT username, role, created_at, password_hash FROM users WHERE username = ?",
                (username,)).fetchone()
        finally:
            conn.close()
        if row is None:
            check_password_hash(_dummy_hash(), password)
            return None
        if not check_password_hash(row["password_hash"], password):
            return None
        return User(row["username"], row["role"], row["created_at"])
