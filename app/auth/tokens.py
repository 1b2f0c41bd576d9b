"""What a token says and when it still counts.

A token's `sub` is the user's immutable id and `ver` the user's token version when it was
issued. On every authenticated request `load_user` reads that user by id (one primary-key
query): a deleted user, or a version that has moved on (password or role changed, user
signed out everywhere), is refused with a 401 naming why. The role is the table's, never
the claim's (`role` stays in the token for clients to read, and is trusted by nothing).

Refresh tokens rotate: each one is good for one refresh, which returns the next one of
the same family (`fam`, one family per login); see `app.auth.refresh_tokens`.
"""
from __future__ import annotations

import time
import uuid

from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token

from app.auth.refresh_tokens import RefreshTokenStore, Use
from app.auth.users import User, UserStore
from app.errors import APIError

USERS_KEY = "scm.users"
REFRESH_KEY = "scm.refresh_tokens"


def users() -> UserStore:
    return current_app.extensions[USERS_KEY]


def refresh_store() -> RefreshTokenStore:
    return current_app.extensions[REFRESH_KEY]


def issue_tokens(user: User, *, family: str | None = None) -> dict:
    """An access token and a refresh token for `user`; a new family unless one is given."""
    claims = {"role": user.role, "ver": user.token_version}
    refresh_jti, new_login = uuid.uuid4().hex, family is None
    family = family or uuid.uuid4().hex
    lifetime = current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]
    refresh_store().record(jti=refresh_jti, family=family, user_id=user.id,
                           expires_at=time.time() + lifetime.total_seconds())
    if new_login:
        refresh_store().keep_newest_families(user.id)
    return {
        "access_token": create_access_token(identity=user.id, additional_claims=claims),
        "refresh_token": create_refresh_token(
            identity=user.id, additional_claims={**claims, "fam": family, "jti": refresh_jti}),
        "token_type": "Bearer",
    }


def load_user(payload: dict) -> User:
    """The user a valid signature vouches for, if the token still counts (see above)."""
    user = users().get_by_id(str(payload.get("sub")))
    if user is None:
        raise APIError(401, "unknown_user", "the token's user no longer exists")
    if payload.get("ver") != user.token_version:
        raise APIError(401, "token_stale",
                       "the token predates a change to the account (password, role, or a "
                       "sign-out everywhere); sign in again")
    return user


def rotate(user: User, payload: dict) -> dict:
    """Trade a refresh token for new tokens, once; a replay revokes its family."""
    outcome = refresh_store().use(str(payload.get("jti")), str(payload.get("fam")))
    if outcome is Use.REUSED:
        raise APIError(401, "refresh_token_reused",
                       "this refresh token was used before; every token of its sign-in is "
                       "revoked now. Sign in again")
    if outcome is Use.REVOKED:
        raise APIError(401, "token_revoked", "this refresh token has been revoked; sign in again")
    return issue_tokens(user, family=str(payload.get("fam")))
