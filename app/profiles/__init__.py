"""Printer profiles: each user's saved back-page offset and paper size (the original
tool's `load_offset`), applied to new sheets when the user asks."""
from __future__ import annotations

from flask import Flask

from app.profiles.store import PrinterProfile, ProfileStore

__all__ = ["PrinterProfile", "ProfileStore", "init_app", "profiles"]

STORE_KEY = "scm.profiles"


def init_app(app: Flask) -> None:
    from app.profiles.api import bp

    app.extensions[STORE_KEY] = ProfileStore(app.config["SETTINGS"].database_url)
    app.register_blueprint(bp)


def profiles(app: Flask) -> ProfileStore:
    return app.extensions[STORE_KEY]
