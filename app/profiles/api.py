"""/api/profile: the caller's own printer profile (read, save, remove)."""
from __future__ import annotations

from typing import Annotated

from flask import Blueprint, current_app, jsonify, request
from flask_jwt_extended import current_user, jwt_required
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.cards.layouts import PAPERS
from app.cards.options import MAX_OFFSET_PX
from app.errors import APIError

bp = Blueprint("profiles_api", __name__, url_prefix="/api/profile")
MAX_BODY = 4 * 1024
Offset = Annotated[int, Field(ge=-MAX_OFFSET_PX, le=MAX_OFFSET_PX)]


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    x: Offset
    y: Offset
    paper_size: str | None = None

    @field_validator("paper_size")
    @classmethod
    def _known_paper(cls, value: str | None) -> str | None:
        if value is not None and value not in PAPERS:
            raise ValueError(f"must be one of {', '.join(PAPERS)}")
        return value


def _store():
    from app.profiles import profiles
    return profiles(current_app)


def _body() -> ProfileBody:
    request.max_content_length = MAX_BODY
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise APIError(400, "invalid_body",
                       'expected a JSON object {"x": 0, "y": 0, "paper_size": "letter"}')
    try:
        return ProfileBody.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                          for e in exc.errors()[:5])
        raise APIError(400, "invalid_body", where) from None


@bp.get("")
@jwt_required()
def read_profile():
    profile = _store().get(current_user.id)
    if profile is None:
        raise APIError(404, "not_found", "no printer profile saved yet")
    return jsonify(profile.to_dict())


@bp.put("")
@jwt_required()
def save_profile():
    body = _body()
    profile = _store().save(current_user.id, x=body.x, y=body.y,
                            paper_size=body.paper_size)
    return jsonify(profile.to_dict())


@bp.delete("")
@jwt_required()
def delete_profile():
    if not _store().delete(current_user.id):
        raise APIError(404, "not_found", "no printer profile saved yet")
    return "", 204
