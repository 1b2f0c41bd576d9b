"""The Flask application factory: settings, extensions, blueprints, per-process services.

`create_app()` builds (never starts) the manager handle and the job services; the entry
points start them through `app.runtime.serve`.
"""
from __future__ import annotations

import logging
import os
import secrets
import time
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import errors, extensions, metrics, openapi, security_headers
from app.auth import init_app as init_auth
from app.cli.cards import cards_cli
from app.db.cli import db_cli
from app.jobs.api import init_app as init_jobs
from app.profiles import init_app as init_profiles
from app.runtime.services import Runtime, attach
from app.settings import Settings, load_settings
from app.supervisor.api import init_app as init_supervisor
from app.web import init_app as init_web

__all__ = ["create_app", "instance_secret"]


def instance_secret(path: Path) -> str:
    """A random secret made once per instance folder and shared by all its processes.

    Outside production no JWT_SECRET_KEY is required, but a constant one would let anyone
    mint tokens for a development server that happens to be reachable.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if secret:
            return secret
        # Another process is between create and write: give it a moment.
        for _ in range(50):
            time.sleep(0.02)
            secret = path.read_text().strip()
            if secret:
                return secret
        raise RuntimeError(f"{path} is empty; delete it to make a new secret") from None
    secret = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret)
    return secret


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application. Starts no thread and no process: entry points do that."""
    settings = settings or load_settings()
    settings.ensure_dirs()
    if not settings.JWT_SECRET_KEY:
        settings = settings.model_copy(
            update={"JWT_SECRET_KEY": instance_secret(settings.run_dir / "jwt_secret")})

    app = Flask("app", instance_path=str(settings.INSTANCE_PATH))
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.JWT_SECRET_KEY,
        MAX_CONTENT_LENGTH=settings.MAX_UPLOAD_MB * 1024 * 1024,
        MAX_FORM_PARTS=settings.MAX_UPLOAD_FILES + 100,
        TESTING=settings.APP_ENV == "testing",
    )
    logging.getLogger("app").setLevel(settings.LOG_LEVEL.upper())
    if settings.TRUSTED_PROXIES:
        # Client addresses (login rate limit) come from the proxies' X-Forwarded-For.
        # (Flask documents wrapping wsgi_app for middleware; its stubs type it as a method)
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.TRUSTED_PROXIES, x_proto=settings.TRUSTED_PROXIES)

    # Each package wires itself; none of these starts anything.
    runtime = attach(app, Runtime(settings))
    errors.init_app(app)
    extensions.init_app(app)
    init_auth(app)
    init_supervisor(app, runtime.handle, after_purge=runtime.fail_purged_jobs,
                    cluster=runtime)
    init_jobs(app, lambda: runtime.jobs)
    init_profiles(app)
    metrics.init_app(app)
    openapi.init_app(app)
    init_web(app)
    app.cli.add_command(cards_cli)
    app.cli.add_command(db_cli)
    security_headers.init_app(app)  # last: wraps every other layer (issue 12)
    return app
