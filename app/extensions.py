"""Flask extensions: JWT authentication and the rate limiter.

Both are built per application (not module globals) so several apps in one
process - the test suite makes many - never share callbacks or limit counters.
"""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import Flask, current_app
from flask_jwt_extended import JWTManager
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from flask_limiter.util import get_remote_address

from app.errors import error_response

JWT_KEY = "scm.jwt"
LIMITER_KEY = "scm.limiter"


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.config.update(
        JWT_SECRET_KEY=settings.JWT_SECRET_KEY,
        JWT_ACCESS_TOKEN_EXPIRES=timedelta(minutes=settings.JWT_ACCESS_TOKEN_MINUTES),
        JWT_REFRESH_TOKEN_EXPIRES=timedelta(days=settings.JWT_REFRESH_TOKEN_DAYS),
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ALGORITHM="HS256",
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.config.update(limiter_storage_config(settings))
    app.extensions[JWT_KEY] = _make_jwt(app)
    # No default limits: only the routes that opt in (login) are limited.
    app.extensions[LIMITER_KEY] = Limiter(get_remote_address, app=app)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        # Flask-Limiter adds Retry-After and X-RateLimit-* in its after_request hook.
        return error_response(429, "rate_limited", exc.description or "too many requests")


DEFAULT_STORAGE_URI = "memory://"
# A Redis that does not answer must cost a login little: fail fast, then fall back.
REDIS_STORAGE_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}


def limiter_storage_config(settings) -> dict:
    """Flask-Limiter's storage settings.

    Limits must hold across processes (gunicorn runs several workers; memory:// counts
    per worker), so when RATELIMIT_STORAGE_URI is left at memory:// and the app has a
    Redis broker, the limiter counts there. A Redis outage then falls back to per-process
    memory counters (never a 500). An explicitly set RATELIMIT_STORAGE_URI always wins.
    """
    explicit = settings.RATELIMIT_STORAGE_URI
    if explicit != DEFAULT_STORAGE_URI or "RATELIMIT_STORAGE_URI" in settings.model_fields_set:
        return {"RATELIMIT_STORAGE_URI": explicit}
    uri = redis_storage_uri(settings.broker_url)
    if uri is None:
        return {"RATELIMIT_STORAGE_URI": DEFAULT_STORAGE_URI}
    return {
        "RATELIMIT_STORAGE_URI": uri,
        "RATELIMIT_STORAGE_OPTIONS": dict(REDIS_STORAGE_OPTIONS),
        "RATELIMIT_KEY_PREFIX": "scm",
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_SWALLOW_ERRORS": True,
    }


def redis_storage_uri(broker_url: str | None) -> str | None:
    """The `limits` storage URI for a Redis broker URL, or None when it is not Redis.

    Kombu spells a Unix socket `redis+socket:///path?virtual_host=N` (password as
    `:pw@`); `limits` wants `redis+unix:///path?db=N` with the same password.
    """
    if not broker_url:
        return None
    if broker_url.startswith(("redis://", "rediss://")):
        return broker_url
    if not broker_url.startswith("redis+socket://"):
        return None
    parts = urlsplit(broker_url)
    query = dict(parse_qsl(parts.query))
    db = query.get("virtual_host") or query.get("db")
    # The password stays percent-encoded as given; redis-py unquotes it.
    userinfo, at, _host = parts.netloc.rpartition("@")
    suffix = f"?{urlencode({'db': db})}" if db else ""
    return f"redis+unix://{userinfo}{at}{parts.path}{suffix}"


def limiter(app: Flask | None = None) -> Limiter:
    return (app or current_app).extensions[LIMITER_KEY]


def _make_jwt(app: Flask) -> JWTManager:
    jwt = JWTManager(app)

    # flask-jwt-extended answers {"msg": ...} by default; the API speaks one error shape.
    @jwt.unauthorized_loader
    def _missing(reason: str):
        return error_response(401, "authorization_required", reason)

    @jwt.invalid_token_loader
    def _invalid(reason: str):
        return error_response(401, "invalid_token", reason)

    @jwt.expired_token_loader
    def _expired(_header, _payload):
        return error_response(401, "token_expired", "token has expired")

    @jwt.revoked_token_loader
    def _revoked(_header, _payload):
        return error_response(401, "token_revoked", "token has been revoked")

    @jwt.needs_fresh_token_loader
    def _not_fresh(_header, _payload):
        return error_response(401, "fresh_token_required", "fresh token required")

    @jwt.token_verification_failed_loader
    def _claims_failed(_header, _payload):
        return error_response(422, "invalid_token", "token claims verification failed")

    @jwt.user_lookup_error_loader
    def _unknown_user(_header, _payload):
        return error_response(401, "unknown_user", "the token's user no longer exists")

    return jwt
