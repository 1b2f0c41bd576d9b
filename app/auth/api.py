"""/api/auth: login, refresh (rotating), me."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import current_user, get_jwt, jwt_required
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits.strategies import MovingWindowRateLimiter

from app.auth.throttle import LoginThrottle, ThrottlePolicy
from app.auth.tokens import issue_tokens, refresh_store, rotate
from app.auth.tokens import users as store
from app.auth.users import MAX_PASSWORD_LENGTH
from app.errors import APIError

MAX_LOGIN_BODY = 16 * 1024
THROTTLE_KEY = "scm.login_throttle"


def _credentials() -> tuple[str, str]:
    # A public endpoint: never buffer a large body (the app-wide limit is for uploads).
    request.max_content_length = MAX_LOGIN_BODY
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", 'expected a JSON object {"username", "password"}')
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) \
            or not username or not password:
        raise APIError(400, "invalid_body", "username and password must be non-empty strings")
    if len(username) > 64 or len(password) > MAX_PASSWORD_LENGTH:
        raise APIError(401, "invalid_credentials", "wrong username or password")
    return username, password


def _too_many(throttle: LoginThrottle) -> APIError:
    return APIError(429, "rate_limited", "too many login attempts; try again shortly",
                    headers={"Retry-After": str(throttle.retry_after)})


def _throttled_authenticate(throttle: LoginThrottle, username: str, password: str):
    # Past a failure limit: checked after a delay, so the right password still gets in.
    with throttle.held() as entered:
        if not entered:
            raise _too_many(throttle)
        return store().authenticate(username, password)


def login():
    username, password = _credentials()
    throttle: LoginThrottle = current_app.extensions[THROTTLE_KEY]
    address = get_remote_address()
    throttled = throttle.over_limit(address, username)
    if throttled:
        user = _throttled_authenticate(throttle, username, password)
    else:
        user = store().authenticate(username, password)
    if user is None:
        throttle.record_failure(address, username)
        if throttled:
            raise _too_many(throttle)
        raise APIError(401, "invalid_credentials", "wrong username or password")
    refresh_store().prune()  # each login also forgets expired refresh tokens
    return jsonify(issue_tokens(user))


def make_throttle(limiter: Limiter, settings) -> LoginThrottle:
    """Login failures are counted in the app's limiter storage (shared across workers)."""
    # The configured storage itself, not Flask-Limiter's current choice (which may be its
    # per-process fallback): every HTTP process must count together.
    strategy = MovingWindowRateLimiter(limiter.storage)
    return LoginThrottle(ThrottlePolicy.from_settings(settings), lambda: strategy)


def make_blueprint() -> Blueprint:
    bp = Blueprint("auth", __name__, url_prefix="/api/auth")
    bp.add_url_rule("/login", "login", login, methods=["POST"])

    @bp.post("/refresh")
    @jwt_required(refresh=True)
    def refresh():
        # New tokens for a refresh token, which is used up by this (see app.auth.tokens).
        return jsonify(rotate(current_user, get_jwt()))

    @bp.get("/me")
    @jwt_required()
    def me():
        return jsonify(current_user.to_dict())

    return bp
