"""Route guards on top of flask-jwt-extended."""
from __future__ import annotations

from functools import wraps

from flask_jwt_extended import current_user, verify_jwt_in_request

from app.errors import APIError


def admin_required(view):
    """A valid access token whose user is (still) an admin; 401 without one, 403 otherwise."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        verify_jwt_in_request()
        # The role is read from the users table (loaded per request), not only the claim,
        # so demoting an admin takes effect before their token expires.
        if current_user is None or not current_user.is_admin:
            raise APIError(403, "forbidden", "admin role required")
        return view(*args, **kwargs)

    return wrapper
