"""Flask extensions: JWT authentication and the rate limiter.

Both are built per application (not module globals) so several apps in one
process - the test suite makes many - never share callbacks or limit counters.
"""
from __future__ import annotations

from datetime import timedelta

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
        RATELIMIT_STORAGE_URI=settings.RATELIMIT_STORAGE_URI,
        RATELIMIT_HEADERS_ENABLED=True,
    )
    app.extensions[JWT_KEY] = _make_jwt(app)
    # No default limits: only the routes that opt in (login) are limited.
    app.extensions[LIMITER_KEY] = Limiter(get_remote_address, app=app)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded):
        # Flask-Limiter adds Retry-After and X-RateLimit-* in its after_request hook.
        return error_response(429, "rate_limited", exc.description or "too many requests")


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
