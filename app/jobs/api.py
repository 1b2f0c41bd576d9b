"""The jobs HTTP API (issue 4, item 4): submit, poll, download, list.

Every route needs a JWT. Users see their own jobs; admins see everyone's; anybody else's
job is a 404 (not 403), so ids cannot be probed. Input is validated completely before a
job exists; a bad request is a 400 with {"error": {"code", "message"}} and leaves nothing
behind.
"""
from __future__ import annotations

import io
import logging
from datetime import UTC, datetime
from pathlib import Path

from flask import Blueprint, current_app, jsonify, request, send_file, url_for
from flask_jwt_extended import current_user, jwt_required

from app.cards.models import Options
from app.celery_config import QUEUE_FOR_KIND
from app.errors import APIError
from app.jobs.engine import OffsetJobParams, SheetJobParams
from app.jobs.fair_use import fair_use_checked  # fair use (issue 12)
from app.jobs.job_services import ServicesProvider, provide_services, services
from app.jobs.limits import job_budget
from app.jobs.names import JOB_STATUSES
from app.jobs.presentation import download_name, extra_view
from app.jobs.store import Job, new_job_id
from app.jobs.uploads import Staging, link_or_copy, present, save_images, save_pdf
from app.jobs.validation import bad, calibration_params, integer, offset_params, sheet_params, text_field

log = logging.getLogger(__name__)

bp = Blueprint("jobs_api", __name__, url_prefix="/api/jobs")

MAX_LIST = 500


def init_app(app, provider: ServicesProvider) -> None:
    """Register the blueprint; `provider` gives this process's JobServices."""
    from app.jobs.actions_api import bp as actions_bp

    provide_services(app, provider)
    app.register_blueprint(bp)
    app.register_blueprint(actions_bp)


# --- helpers ----------------------------------------------------------------------------
def _caller() -> tuple[str, bool]:
    """The caller's user id and whether they are an admin now: both from the users table
    (app.auth.tokens loads the user per request), never from the token's claims."""
    return current_user.id, current_user.is_admin


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat().replace("+00:00", "Z")


def job_view(job: Job) -> dict:
    """Exactly the fields the API promises."""
    ready = job.status == "succeeded" and bool(job.output_path)
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": round(float(job.progress or 0.0), 4),
        "message": job.message,
        "mode": job.mode,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "result_url": url_for("jobs_api.result", job_id=job.id) if ready else None,
        **extra_view(job, ready=ready),
    }


def _visible_job(job_id: str) -> Job:
    user, admin = _caller()
    job = services(current_app).store.get(job_id) if len(job_id) <= 64 else None
    if job is None or (job.owner != user and not admin):
        raise APIError(404, "not_found", "no such job")
    return job


def _accepted(job: Job):
    response = jsonify({"id": job.id,
                        "status_url": url_for("jobs_api.status", job_id=job.id)})
    response.status_code = 202
    response.headers["Location"] = url_for("jobs_api.status", job_id=job.id)
    return response


def _create_and_dispatch(job_id: str, kind: str, params: Options) -> Job:
    """Store the job with its params as the model's JSON (the worker validates it again)."""
    jobs = services(current_app)
    user, _admin = _caller()
    job = jobs.store.create(owner=user, kind=kind, params=params.model_dump(mode="json"),
                            queue=QUEUE_FOR_KIND[kind], job_id=job_id)
    try:
        jobs.dispatcher.submit(job)
    except Exception:
        # The job is recorded as queued and undispatched: the reconciler sends it. The
        # caller gets its 202 either way; nothing is lost.
        log.exception("dispatching job %s failed; the reconciler will retry", job.id)
    return job


def _printer_offset_if_asked(form) -> dict | None:
    """The caller's saved printer offset (app.profiles) when `apply_profile` is true."""
    from app.cards.errors import CardError
    from app.cards.options import as_bool
    from app.profiles import profiles

    try:
        wanted = as_bool(text_field(form, "apply_profile", default="false"), "apply_profile")
    except CardError as exc:
        raise bad(str(exc)) from None
    if not wanted:
        return None
    profile = profiles(current_app).get(_caller()[0])
    if profile is None:
        raise bad("apply_profile: you have no saved printer profile yet", "no_profile")
    return {"x": profile.x, "y": profile.y}


def _settings():
    return current_app.config["SETTINGS"]


# --- submission -----------------------------------------------------------------------------
@bp.post("/sheets")
@jwt_required()
@fair_use_checked  # issue 12: per-user rate and queue cap, 429
def submit_sheets():
    settings = _settings()
    params = sheet_params(request.form)
    printer_offset = _printer_offset_if_asked(request.form)
    fronts = present(request.files.getlist("fronts") + request.files.getlist("fronts[]"))
    backs = present(request.files.getlist("back"))
    doubles = present(request.files.getlist("double_sided")
                      + request.files.getlist("double_sided[]"))
    if not fronts:
        raise bad("upload at least one card image as 'fronts'", "missing_file")
    if len(backs) > 1:
        raise bad("upload at most one 'back' image (it is used for every card)")
    if params.only_fronts and (backs or doubles):
        raise bad("only_fronts cannot be combined with a back or double-sided images")
    total = len(fronts) + len(backs) + len(doubles)
    if total > settings.MAX_UPLOAD_FILES:
        raise bad(f"{total} files uploaded; at most {settings.MAX_UPLOAD_FILES} per job",
                  "too_many_files")

    job_id = new_job_id()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    with Staging(settings.uploads_dir, job_id) as staging:
        limits = {"max_pixels": settings.MAX_IMAGE_PIXELS, "budget": job_budget(settings)}
        front_names = save_images(staging, fronts, "fronts", "fronts", **limits)
        save_images(staging, backs, "back", "back", **limits)
        double_names = save_images(staging, doubles, "double_sided", "double_sided", **limits)
        unmatched = sorted(set(double_names) - set(front_names))
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
            raise bad(f"double_sided: no front with the same file name for {shown}",
                      "invalid_file")
        files = {"fronts": len(front_names), "back": len(backs),
                 "double_sided": len(double_names)}
        staging.commit()
    return _accepted(_create_and_dispatch(job_id, "sheets",
                                          SheetJobParams.parse(
        params, files=files, printer_offset=printer_offset)))


@bp.post("/offset")
@jwt_required()
@fair_use_checked  # issue 12: per-user rate and queue cap, 429
def submit_offset():
    settings = _settings()
    params = offset_params(request.form)
    pdfs = present(request.files.getlist("pdf"))
    source_id = text_field(request.form, "source_job_id")
    source_id = source_id.strip() if source_id else None
    if bool(pdfs) == bool(source_id):
        raise bad("give either a 'pdf' file or a 'source_job_id', not both or neither",
                  "missing_file" if not pdfs else "invalid_input")
    if len(pdfs) > 1:
        raise bad("upload one 'pdf' file")
    source_path = _source_output(source_id) if source_id else None

    job_id = new_job_id()
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    with Staging(settings.uploads_dir, job_id) as staging:
        if source_path is not None:
            link_or_copy(source_path, staging.path / "input.pdf")
        else:
            save_pdf(staging, pdfs[0])
        staging.commit()
    return _accepted(_create_and_dispatch(job_id, "offset", OffsetJobParams.parse(
        params, source_job_id=source_id)))


def _source_output(source_id: str) -> Path:
    user, admin = _caller()
    job = services(current_app).store.get(source_id) if len(source_id) <= 64 else None
    if job is None or (job.owner != user and not admin):
        raise bad("source_job_id: no such job", "invalid_source_job")
    path = _output_file(job)
    if job.status != "succeeded" or path is None:
        raise bad(f"source_job_id: job {source_id} has no PDF to offset "
                  f"(status {job.status})", "invalid_source_job")
    return path


def _output_file(job: Job) -> Path | None:
    """The job's PDF on this host's view of STORAGE_DIR, if it is still there."""
    if not job.output_path:
        return None
    path = current_app.config["SETTINGS"].in_storage(job.output_path)
    return path if path.is_file() else None


@bp.post("/calibration")
@jwt_required()
@fair_use_checked  # issue 12: per-user rate and queue cap, 429
def submit_calibration():
    if request.is_json:
        data = request.get_json(silent=True)
        if data is None:
            raise bad("the body is not valid JSON")
    else:
        data = {key: request.form.get(key) for key in request.form}
    params = calibration_params(data)
    return _accepted(_create_and_dispatch(new_job_id(), "calibration", params))


# --- reading -------------------------------------------------------------------------------
@bp.get("/<job_id>")
@jwt_required()
def status(job_id: str):
    return jsonify(job_view(_visible_job(job_id)))


@bp.get("/<job_id>/result")
@jwt_required()
def result(job_id: str):
    job = _visible_job(job_id)
    if job.status == "failed":
        raise APIError(409, "job_failed", f"the job failed: {job.error or 'unknown error'}")
    if job.status != "succeeded":
        raise APIError(409, "not_ready", f"the job is {job.status}; try again later")
    path = _output_file(job)
    if path is None:
        raise APIError(410, "expired", "the result has been cleaned up; submit the job again")
    return send_file(path, mimetype="application/pdf", as_attachment=True,
                     download_name=download_name(job), max_age=0)


CUT_FILE_TYPES = {"svg": "image/svg+xml", "dxf": "application/dxf"}


@bp.get("/<job_id>/cutfile")
@jwt_required()
def cutfile(job_id: str):
    """Cut lines for the layout a sheets job used (made on request: a few kB)."""
    job = _visible_job(job_id)
    fmt = request.args.get("format", "svg")
    if fmt not in CUT_FILE_TYPES:
        raise bad(f"format must be one of {', '.join(CUT_FILE_TYPES)}")
    if job.kind != "sheets":
        raise bad(f"a {job.kind} job has no card layout; cut files belong to sheets jobs")
    from app.cards.cutfile import cutfile_bytes
    from app.cards.layouts import get_layout
    paper, card = job.params.get("paper_size", "letter"), job.params.get("card_size", "standard")
    data = cutfile_bytes(paper, card, fmt)
    return send_file(io.BytesIO(data), mimetype=CUT_FILE_TYPES[fmt], as_attachment=True,
                     download_name=f"{get_layout(paper, card).template}-cut.{fmt}", max_age=0)


@bp.get("")
@jwt_required()
def list_jobs():
    user, admin = _caller()
    limit = integer(request.args.get("limit", "100"), "limit", 1, MAX_LIST)
    offset = integer(request.args.get("offset", "0"), "offset", 0, 10**9)
    wanted = request.args.get("status")
    if wanted is not None and wanted not in JOB_STATUSES:
        raise bad(f"status must be one of {', '.join(JOB_STATUSES)}")
    jobs = services(current_app).store.list(owner=None if admin else user, status=wanted,
                                            limit=limit, offset=offset)
    return jsonify({"jobs": [job_view(job) for job in jobs]})
