"""Which Python libraries a broker or result-backend URL needs, and whether they import.

Why at start: kombu and Celery import a transport's client library only when they first
connect. A missing one (boto3/pycurl for sqs://, SQLAlchemy or the psycopg driver for
db+postgresql://) used to surface as every worker crash-looping to FAILED while the app
quietly ran everything in threads. Checked once from `load_settings` (every entry point)
and from the manager's broker choice, so the start stops with one line naming the extra
to install.

No imports from the rest of `app`: `app.settings` calls this.
"""
from __future__ import annotations

import importlib
from urllib.parse import urlsplit

# URL scheme -> (modules kombu needs, the optional extra that installs them)
BROKER_LIBRARIES: dict[str, tuple[tuple[str, ...], str]] = {
    "sqs": (("boto3", "pycurl"), "sqs"),
    "redis": (("redis",), "(base install)"),
    "rediss": (("redis",), "(base install)"),
    "redis+socket": (("redis",), "(base install)"),
    "amqp": (("amqp",), "(base install)"),
    "amqps": (("amqp",), "(base install)"),
    "pyamqp": (("amqp",), "(base install)"),
}


def _importable(module: str) -> str | None:
    """None when `module` imports; else why not (the ImportError's text)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        return str(exc) or f"No module named {module!r}"
    return None


def broker_problem(url: str | None) -> str | None:
    if not url:
        return None
    scheme = urlsplit(url).scheme
    modules, extra = BROKER_LIBRARIES.get(scheme, ((), ""))
    for module in modules:
        why = _importable(module)
        if why:
            return (f"CELERY_BROKER_URL uses {scheme}:// but its client library {module!r} "
                    f"is missing ({why}); install it: pip install "
                    f"'silhouette-card-maker[{extra}]'")
    return None


def result_backend_problem(url: str | None) -> str | None:
    if not url:
        return None
    scheme = urlsplit(url).scheme
    if scheme.startswith("db+"):
        return _database_backend_problem(url[len("db+"):])
    if scheme in ("redis", "rediss", "redis+socket"):
        why = _importable("redis")
        return f"CELERY_RESULT_BACKEND {scheme}:// needs redis-py ({why})" if why else None
    return None


def _database_backend_problem(sqlalchemy_url: str) -> str | None:
    """Celery's database backend: SQLAlchemy plus the DBAPI driver the URL names."""
    hint = ("install it: pip install 'silhouette-card-maker[postgres]' (SQLAlchemy and "
            "psycopg 3; write the URL as db+postgresql+psycopg://...)")
    why = _importable("sqlalchemy")
    if why:
        return f"CELERY_RESULT_BACKEND uses db+ but SQLAlchemy is missing ({why}); {hint}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    try:
        dialect = make_url(sqlalchemy_url).get_dialect()
        dialect.import_dbapi()
    except (ArgumentError, NoSuchModuleError) as exc:
        return f"CELERY_RESULT_BACKEND: {exc}"
    except ImportError as exc:
        return (f"CELERY_RESULT_BACKEND db+{sqlalchemy_url.split('://', 1)[0]}:// needs its "
                f"database driver ({exc}); {hint}")
    return None


def client_library_problem(broker_url: str | None, result_backend: str | None) -> str | None:
    """The first missing library, as one line for the operator; None when all import."""
    return broker_problem(broker_url) or result_backend_problem(result_backend)
