"""First run: a one-time link that lets whoever holds it create the first admin.

A fresh instance has no user and nobody to sign in as. The entry point calls
`announce_first_run`, which writes a random token to `run/setup_token` (0600) while no
user exists and prints the page's URL with the link. `POST /api/auth/setup` accepts the
token from any address, once: the request that renames the token file away wins, so two
concurrent requests cannot both create an admin. Once any user exists the token file is
removed and the endpoint answers 403, whatever token is sent.

The token travels in the URL fragment (`/#setup=...`), which browsers never send to the
server, so it does not land in access logs or Referer headers.
"""
from __future__ import annotations

import hmac
import os
import secrets
import sys
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request

from app.auth.users import UserError, UserStore, validate_password, validate_username
from app.errors import APIError

TOKEN_FILE = "setup_token"
MAX_SETUP_BODY = 16 * 1024
MAX_TOKEN_CHARS = 200


class SetupToken:
    """The token file of one instance folder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / TOKEN_FILE

    def issue(self) -> str:
        """The current token, made on first call (shared by every process of the instance)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            existing = self.read()
            if existing:
                return existing
            self.path.unlink(missing_ok=True)  # an empty leftover of a crash
            return self.issue()
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as handle:
            handle.write(token)
        return token

    def read(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def matches(self, candidate: str) -> bool:
        expected = self.read()
        if not expected:
            return False
        return hmac.compare_digest(expected.encode(), candidate.encode())

    def consume(self) -> Path | None:
        """Atomically take the token out of play; the path to restore it from, or None
        when another request took it first."""
        claimed = self.path.with_name(f"{TOKEN_FILE}.{secrets.token_hex(8)}")
        try:
            os.rename(self.path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def restore(self, claimed: Path) -> None:
        os.rename(claimed, self.path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def setup_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/#setup={token}"


def announce_first_run(app, *, out=None) -> str | None:
    """Print the page's URL, and the setup link while no user exists. Returns the link."""
    settings = app.config["SETTINGS"]
    users: UserStore = app.extensions["scm.users"]
    token = SetupToken(settings.run_dir)
    base = f"http://{settings.HOST}:{settings.PORT}"
    out = out or sys.stdout
    if users.list():
        token.discard()
        print(f"Silhouette Card Maker: {base}/", file=out, flush=True)
        return None
    link = setup_url(base, token.issue())
    print(f"Silhouette Card Maker: {base}/\n"
          f"No user exists yet. Create the first admin (this link works once):\n  {link}",
          file=out, flush=True)
    return link


def _setup_body() -> tuple[str, str, str]:
    request.max_content_length = MAX_SETUP_BODY
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body",
                       'expected a JSON object {"token", "username", "password"}')
    keys = ("token", "username", "password")
    values = [value for value in (body.get(key) for key in keys) if isinstance(value, str) and value]
    if len(values) != len(keys):
        raise APIError(400, "invalid_body", "token, username and password must be non-empty text")
    if len(values[0]) > MAX_TOKEN_CHARS:
        raise APIError(403, "invalid_setup_token", "the setup link is not valid")
    return values[0], values[1], values[2]


def _create_first_admin(users: UserStore, token: SetupToken, username: str, password: str):
    claimed = token.consume()
    if claimed is None:
        raise APIError(403, "invalid_setup_token", "the setup link has already been used")
    try:
        if users.list():
            raise APIError(403, "setup_closed", "a user exists already; sign in instead")
        user = users.create(username, password, "admin")
    except BaseException:
        token.restore(claimed)
        raise
    claimed.unlink(missing_ok=True)
    return user


def make_setup_blueprint() -> Blueprint:
    bp = Blueprint("auth_setup", __name__, url_prefix="/api/auth")

    @bp.get("/setup")
    def setup_state():
        """Public: whether the instance still waits for its first admin (no secrets)."""
        users: UserStore = current_app.extensions["scm.users"]
        return jsonify({"needed": not users.list()})

    @bp.post("/setup")
    def setup():
        token_text, username, password = _setup_body()
        users: UserStore = current_app.extensions["scm.users"]
        token = SetupToken(current_app.config["SETTINGS"].run_dir)
        if users.list():
            raise APIError(403, "setup_closed", "a user exists already; sign in instead")
        if not token.matches(token_text):
            raise APIError(403, "invalid_setup_token", "the setup link is not valid")
        try:
            validate_username(username)
            validate_password(password)
            user = _create_first_admin(users, token, username, password)
        except UserError as exc:
            raise APIError(400, "invalid_user", str(exc)) from None
        response = jsonify(user.to_dict())
        response.status_code = 201
        return response

    return bp
