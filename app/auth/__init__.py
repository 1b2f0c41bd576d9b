"""Authentication: users in the job store database, JWT login/refresh/me, roles, `flask users`."""
from __future__ import annotations

import logging

from flask import Flask

from app.auth.api import THROTTLE_KEY, make_blueprint, make_throttle
from app.auth.cli import users_cli
from app.auth.decorators import admin_required
from app.auth.refresh_tokens import RefreshTokenStore
from app.auth.setup import make_setup_blueprint
from app.auth.tokens import REFRESH_KEY, USERS_KEY, load_user
from app.auth.users import User, UserError, UserStore
from app.extensions import JWT_KEY, limiter
from app.settings import SettingsError

__all__ = ["User", "UserStore", "admin_required", "init_app"]

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    users = UserStore(settings.database_url)
    users.init_schema()
    app.extensions[USERS_KEY] = users
    app.extensions[REFRESH_KEY] = RefreshTokenStore(settings.database_url)

    # The one place a token becomes a user, for every protected route: existence, token
    # version and role come from the users table (see app.auth.tokens).
    app.extensions[JWT_KEY].user_lookup_loader(lambda _header, payload: load_user(payload))

    app.extensions[THROTTLE_KEY] = make_throttle(limiter(app), settings)
    app.register_blueprint(make_blueprint())
    app.register_blueprint(make_setup_blueprint())
    app.cli.add_command(users_cli)
    bootstrap_admin(users, settings.ADMIN_USERNAME, settings.ADMIN_PASSWORD)


def bootstrap_admin(users: UserStore, username: str | None, password: str | None) -> None:
    """Create the first admin from ADMIN_USERNAME/ADMIN_PASSWORD; never overwrites a user.

    Runs at every app creation (each gunicorn worker), so it must be idempotent and
    race-free: the primary key decides between concurrent processes.
    """
    if not username and not password:
        return
    if not (username and password):
        log.warning("ADMIN_USERNAME and ADMIN_PASSWORD must both be set; no admin bootstrapped")
        return
    try:
        created = users.create(username, password, "admin", if_missing=True)
    except UserError as exc:
        # A weak or malformed bootstrap credential is a configuration error: refuse to start
        # rather than run with no admin (or a guessable one).
        raise SettingsError(f"ADMIN_USERNAME/ADMIN_PASSWORD: {exc}") from None
    if created:
        log.info("bootstrapped admin user %r", username)
