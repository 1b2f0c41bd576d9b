"""Silhouette Card Maker. The application factory is `create_app` (app.factory)."""
from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):
    # Lazy: Celery workers and the card engine import `app.*` without the web stack
    # (about a second of imports they never use).
    if name == "create_app":
        from app.factory import create_app
        return create_app
    raise AttributeError(f"module 'app' has no attribute {name!r}")
