"""What the pages need of a job beyond its record: summary and warnings apart, whether it
was cancelled, its thumbnails, and the file name its PDF downloads as."""
from __future__ import annotations

from flask import current_app, g, url_for
from flask_jwt_extended import get_current_user
from werkzeug.utils import secure_filename

from app.jobs.actions import is_cancelled
from app.jobs.store import Job


def has_back_pages(job: Job) -> bool:
    if job.kind == "sheets":
        return not job.params.get("only_fronts")
    return job.kind == "offset"


def download_name(job: Job) -> str:
    """The deck's label as the file name (`my-deck.pdf`); kind and id without one."""
    label = secure_filename(str(job.params.get("name") or ""))
    return f"{label}.pdf" if label else f"{job.kind}-{job.id[:8]}.pdf"


def current_user_or_none():
    try:
        return get_current_user()
    except RuntimeError:  # no token was verified in this request
        return None


DELETED_OWNER = "deleted:"  # migration 0004: jobs of users gone before ids existed


def owner_name(owner_id: str) -> str | None:
    """The owner's current user name (jobs name the id); None once the user is gone.
    Cached per request: a list of many jobs has few owners."""
    if owner_id.startswith(DELETED_OWNER):
        return None
    names: dict[str, str | None] = g.setdefault("scm_owner_names", {})
    caller = current_user_or_none()
    if caller is not None:
        names.setdefault(caller.id, caller.username)  # a user's own jobs cost no query
    if owner_id not in names:
        user = current_app.extensions["scm.users"].get_by_id(owner_id)
        names[owner_id] = user.username if user is not None else None
    return names[owner_id]


def extra_view(job: Job, *, ready: bool) -> dict:
    lines = (job.message or "").split("\n")
    thumbnails = None
    if ready:
        thumbnails = {"front": url_for("jobs_actions.job_thumbnail", job_id=job.id,
                                       side="front"),
                      "back": url_for("jobs_actions.job_thumbnail", job_id=job.id, side="back")
                      if has_back_pages(job) else None}
    return {
        "owner": job.owner,
        "owner_name": owner_name(job.owner),
        "label": job.params.get("name"),
        "summary": lines[0],
        "warnings": [line for line in lines[1:] if line],
        "cancelled": is_cancelled(job),
        "thumbnails": thumbnails,
        "download_name": download_name(job) if ready else None,
        "printer_offset": job.params.get("printer_offset"),
    }
