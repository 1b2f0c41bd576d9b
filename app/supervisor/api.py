"""/api/celery: the admin API, one-to-one over the manager, and the public health probe."""
from __future__ import annotations

import json
import logging
from typing import Annotated, Callable, Literal

from flask import Blueprint, Flask, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.auth import admin_required
from app.errors import APIError, error_response
from app.settings import KNOWN_QUEUES
from app.supervisor.errors import BROKER_ERRORS, BrokerUnavailable, SupervisorError

log = logging.getLogger(__name__)
bp = Blueprint("celery_admin", __name__, url_prefix="/api/celery")

QueueName = Literal[KNOWN_QUEUES]  # type: ignore[valid-type]
MAX_CONCURRENCY = 64
MAX_STOP_TIMEOUT = 600
MAX_BODY = 64 * 1024  # the largest valid body is a few hundred bytes


class _Body(BaseModel):
    # Strict: "3" is not a concurrency and true is not a timeout.
    model_config = ConfigDict(extra="forbid", strict=True)


class StartBody(_Body):
    concurrency: Annotated[int, Field(ge=1, le=MAX_CONCURRENCY)] | None = None
    # Repeats weight a queue, as in CELERY_QUEUES.
    queues: Annotated[list[QueueName], Field(min_length=1, max_length=MAX_CONCURRENCY)] \
        | None = None


class StopBody(_Body):
    timeout: Annotated[float, Field(ge=0, le=MAX_STOP_TIMEOUT, allow_inf_nan=False)] = 30


class RestartBody(_Body):
    queue: QueueName | None = None


class PurgeBody(_Body):
    queues: Annotated[list[QueueName], Field(min_length=1, max_length=len(KNOWN_QUEUES) * 4)]


def _handle():
    from app.supervisor import manager_handle
    return manager_handle(current_app)


def _body(model: type[_Body], *, required: bool = False) -> _Body:
    # Per-request cap (Flask 3.1): also bounds chunked bodies without a Content-Length.
    request.max_content_length = MAX_BODY
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise APIError(400, "invalid_body", "a JSON object body is required")
        data = {}
    else:
        data = request.get_json(silent=True, force=True)
        if data is None:
            raise APIError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(data, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise APIError(400, "invalid_body", _describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@bp.get("/health")
def health():
    """Public: cached state only, no hosts/pids/paths."""
    code, body = public_health(_handle().health())
    response = jsonify(body)
    response.status_code = code
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/status")
@admin_required
def status():
    return jsonify(_handle().status())


@bp.post("/start")
@admin_required
def start():
    body = _body(StartBody)
    return jsonify(_handle().start(concurrency=body.concurrency, queues=body.queues))


@bp.post("/stop")
@admin_required
def stop():
    body = _body(StopBody)
    return jsonify(_handle().stop(timeout=body.timeout))


@bp.post("/restart")
@admin_required
def restart():
    body = _body(RestartBody)
    return jsonify(_handle().restart(queue=body.queue))


@bp.get("/tasks")
@admin_required
def tasks():
    return jsonify(_handle().tasks())


@bp.get("/stats")
@admin_required
def stats():
    return jsonify(_handle().stats())


@bp.get("/workers/<worker>/log")
@admin_required
def worker_log(worker: str):
    """The tail of one worker's own log file (see app.supervisor.logtail)."""
    from app.supervisor.logtail import read_tail, requested_bytes, worker_log_path

    limit = requested_bytes(request.args.get("bytes"))
    path = worker_log_path(current_app.config["SETTINGS"], _handle().status(), worker)
    return jsonify({"worker": worker, **read_tail(path, limit)})


@bp.post("/purge")
@admin_required
def purge():
    body = _body(PurgeBody, required=True)
    # Distinct names, in the caller's order: purging a queue twice would report 0 the 2nd time.
    queues = list(dict.fromkeys(body.queues))
    import time

    from app.jobs import fail_purged_jobs

    started = time.time()
    result = dict(_handle().purge(queues))
    # The purge emptied the broker's lists, but the jobs would still be queued on Celery in
    # the store, and the jobs reconciler would publish them again: fail them instead.
    try:
        result["jobs_failed"] = fail_purged_jobs(
            current_app, list(result.get("purged") or queues), purge_started=started,
            purge_finished=time.time())
    except Exception:  # the purge itself succeeded; say so, with the jobs part unknown
        log.exception("failing the jobs of purged queues %s failed", queues)
        result["jobs_failed"] = None
    return jsonify(result)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(SupervisorError)
    def _supervisor_error(exc: SupervisorError):
        if exc.http_status >= 500:
            log.warning("%s: %s", exc.code, exc.message)
        return error_response(exc.http_status, exc.code, exc.message)

    # A broker outage surfacing from Celery/kombu/redis inside inspect or purge is a 503,
    # whichever library raised it.
    for exc_type in BROKER_ERRORS:
        app.register_error_handler(exc_type, _broker_down)


def _broker_down(exc: Exception):
    log.warning("broker unavailable: %s", exc)
    err = BrokerUnavailable("the broker did not answer")
    return error_response(err.http_status, err.code, err.message)


# --------------------------------------------------------------------------- fast probe
# Load balancers call the health probe many times a second on every instance. Its answer
# is cached state (ManagerHandle.health), so Flask's request context, the rate limiter's
# hooks and the JSON provider would be most of its cost: HealthProbe answers it as a tiny
# WSGI layer in front of Flask. The Flask route above returns the same body (documented
# in the OpenAPI spec; reached if the layer is ever removed).

HEALTH_PATH = "/api/celery/health"
HEALTH_KEYS = ("healthy", "status", "mode", "uptime_seconds", "restart_count", "workers")


def public_health(raw: dict) -> tuple[int, dict]:
    """Only the documented keys (no hosts, pids, paths); 503 only when unhealthy."""
    body = {key: raw.get(key) for key in HEALTH_KEYS}
    return (503 if body.get("status") == "unhealthy" else 200), body


class HealthProbe:
    def __init__(self, wsgi_app: Callable, health: Callable[[], dict]):
        self.wsgi_app = wsgi_app
        self.health = health

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != HEALTH_PATH or environ.get("REQUEST_METHOD") not in (
                "GET", "HEAD"):
            return self.wsgi_app(environ, start_response)
        try:
            code, body = public_health(self.health())
        except Exception:  # a probe must answer; a broken handle reads as unhealthy
            log.exception("health probe failed")
            code, body = 503, {"healthy": False, "status": "unhealthy", "mode": None,
                               "uptime_seconds": None, "restart_count": None, "workers": None}
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode() + b"\n"
        start_response("200 OK" if code == 200 else "503 SERVICE UNAVAILABLE", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
        ])
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [payload]
