"""Silhouette Card Maker: the Flask application factory."""
from __future__ import annotations

import logging

from flask import Flask

from app.settings import Settings, load_settings

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """Build the application. Starts no thread and no process: entry points do that."""
    settings = settings or load_settings()
    settings.ensure_dirs()

    app = Flask(__name__, instance_path=str(settings.INSTANCE_PATH))
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
        from werkzeug.middleware.proxy_fix import ProxyFix
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.TRUSTED_PROXIES,
                                x_proto=settings.TRUSTED_PROXIES)

    # Each package wires itself; none of these starts anything.
    from app import errors, extensions, metrics, openapi
    from app.auth import init_app as init_auth
    from app.cards.cli import cards_cli
    from app.jobs import init_app as init_jobs
    from app.supervisor import init_app as init_supervisor
    from app.web import init_app as init_web

    errors.init_app(app)
    extensions.init_app(app)
    init_auth(app)
    init_supervisor(app)
    init_jobs(app)
    metrics.init_app(app)
    openapi.init_app(app)
    init_web(app)
    app.cli.add_command(cards_cli)
    return app
