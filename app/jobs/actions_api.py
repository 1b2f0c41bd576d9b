"""Job actions beside the jobs API: cancel, delete, thumbnails of the result.

Same rules as app.jobs.api: a JWT, users act on their own jobs (admins on all), anybody
else's job is a 404."""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, send_file
from flask_jwt_extended import jwt_required

from app.errors import APIError
from app.jobs import services
from app.jobs.actions import JobActions, celery_revoker
from app.jobs.api import _output_file, _visible_job, job_view
from app.jobs.thumbnails import SIDES, NoSuchPage, ThumbnailBusy, thumbnail

bp = Blueprint("jobs_actions", __name__, url_prefix="/api/jobs")


def _actions() -> JobActions:
    jobs = services(current_app)
    return JobActions(current_app.config["SETTINGS"], jobs.store,
                      revoke=celery_revoker(jobs.dispatcher))


@bp.post("/<job_id>/cancel")
@jwt_required()
def cancel(job_id: str):
    job = _visible_job(job_id)
    if not _actions().cancel(job):
        raise APIError(409, "already_finished", f"the job has {job.status} already")
    cancelled = services(current_app).store.get(job.id)
    if cancelled is None:  # a DELETE of the same job won the race
        raise APIError(404, "not_found", "no such job")
    return jsonify(job_view(cancelled))


@bp.delete("/<job_id>")
@jwt_required()
def delete(job_id: str):
    _actions().delete(_visible_job(job_id))
    return "", 204


@bp.get("/<job_id>/thumbnail/<side>")
@jwt_required()
def job_thumbnail(job_id: str, side: str):
    job = _visible_job(job_id)
    if side not in SIDES:
        raise APIError(404, "not_found", f"side must be one of {', '.join(SIDES)}")
    path = _output_file(job)
    if job.status != "succeeded" or path is None:
        raise APIError(409, "not_ready", f"the job is {job.status}; no result to show")
    try:
        png = thumbnail(current_app.config["SETTINGS"], job.id, path, side)
    except NoSuchPage:
        raise APIError(404, "no_such_page", f"the result has no {side} page") from None
    except ThumbnailBusy:
        raise APIError(503, "busy", "too many thumbnails are being drawn; try again",
                       headers={"Retry-After": "2"}) from None
    return send_file(png, mimetype="image/png", max_age=0)
