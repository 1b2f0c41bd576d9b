"""The users table: ids, names, hashed passwords, roles and token versions, in the store
DATABASE_URL names (the instance SQLite file by default). Schema: `app.db.schema.users`."""
from __future__ import annotations

import functools
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from werkzeug.security import check_password_hash, generate_password_hash

from app.db import as_url, engine_for
from app.db.schema import printer_profiles, refresh_tokens, users

ROLES = ("admin", "user")
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
USER_COLUMNS = (users.c.id, users.c.username, users.c.role, users.c.created_at,
                users.c.token_version)


@functools.cache
def _dummy_hash() -> str:
    # Checking a password against this costs the same time as a real check, so a
    # login for an unknown name is not measurably faster than a wrong password.
    return generate_password_hash("not-a-real-password")


class UserError(ValueError):
    """A user cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class User:
    id: str  # immutable and never reused: what tokens and jobs name
    username: str
    role: str
    created_at: float
    token_version: int = 0  # tokens carrying another version are refused

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def to_dict(self) -> dict:
        return {"id": self.id, "username": self.username, "role": self.role,
                "created_at": self.created_at}


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
    """Small repository over the `users` table; each call is its own transaction."""

    def __init__(self, target: Path | str):
        self.url = as_url(target)

    @property
    def engine(self) -> Engine:
        return engine_for(self.url)

    def init_schema(self) -> None:
        """Open the store once: brings the schema to the newest migration."""
        self.engine  # noqa: B018 - engine_for migrates on first use

    def get(self, username: str) -> User | None:
        return self._one(users.c.username == username)

    def get_by_id(self, user_id: str) -> User | None:
        """The user a token names (one primary-key lookup, on every authenticated request)."""
        return self._one(users.c.id == user_id)

    def _one(self, condition) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*USER_COLUMNS).where(condition)).first()
        return User(*row) if row else None

    def list(self) -> list[User]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*USER_COLUMNS).order_by(users.c.username))
            return [User(*row) for row in rows]

    def create(self, username: str, password: str, role: str = "user", *,
               if_missing: bool = False) -> User | None:
        """Add a user. With `if_missing`, an existing name is left alone and None returned."""
        validate_username(username)
        validate_password(password)
        _check_role(role)
        if if_missing and self.get(username) is not None:
            return None  # skip the (slow) hash when there is nothing to do
        user = User(uuid.uuid4().hex, username, role, time.time())
        try:
            with self.engine.begin() as conn:
                conn.execute(users.insert().values(
                    id=user.id, username=username, role=role, created_at=user.created_at,
                    password_hash=generate_password_hash(password), token_version=0))
        except sa.exc.IntegrityError:
            if if_missing:  # another process created it between our check and insert
                return None
            raise UserError(f"user {username!r} already exists") from None
        return user

    def _update(self, username: str, **values) -> None:
        # Every change that matters to a token also bumps the version: tokens issued
        # before it are refused from the next request on.
        values["token_version"] = users.c.token_version + 1
        with self.engine.begin() as conn:
            changed = conn.execute(users.update().where(users.c.username == username)
                                   .values(**values)).rowcount
        if changed == 0:
            raise UserError(f"no user {username!r}")

    def set_password(self, username: str, password: str) -> None:
        validate_password(password)
        self._update(username, password_hash=generate_password_hash(password))

    def set_role(self, username: str, role: str) -> None:
        _check_role(role)
        self._update(username, role=role)

    def revoke_tokens(self, username: str) -> None:
        """Sign the user out everywhere: every token issued so far stops working."""
        self._update(username)

    def delete(self, username: str) -> bool:
        with self.engine.begin() as conn:
            user_id = conn.execute(sa.select(users.c.id)
                                   .where(users.c.username == username)).scalar()
            if user_id is None:
                return False
            # What only the account itself used goes with it; its jobs stay (admins may
            # still need them) under an id nobody will ever have again.
            conn.execute(refresh_tokens.delete().where(refresh_tokens.c.user_id == user_id))
            conn.execute(printer_profiles.delete().where(printer_profiles.c.user_id == user_id))
            return conn.execute(users.delete().where(users.c.id == user_id)).rowcount > 0

    def authenticate(self, username: str, password: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*USER_COLUMNS, users.c.password_hash)
                               .where(users.c.username == username)).first()
        if row is None:
            check_password_hash(_dummy_hash(), password)
            return None
        if not check_password_hash(row.password_hash, password):
            return None
        return User(*row[:len(USER_COLUMNS)])


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
