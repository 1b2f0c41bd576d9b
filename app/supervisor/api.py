"""/api/celery: the admin API (one route per operation of app.supervisor.admin_ops) and
the public health probe."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from flask import Blueprint, Flask, current_app, jsonify, request
from pydantic import ValidationError

from app.auth import admin_required
from app.cluster import HostCommandError
from app.errors import APIError, error_response
from app.supervisor.admin_ops import ADMIN_OPS, HEALTH_KEYS, AdminOp
from app.supervisor.control import ManagerHandle
from app.supervisor.errors import BROKER_ERRORS, BrokerUnavailable, SupervisorError

log = logging.getLogger(__name__)
bp = Blueprint("celery_admin", __name__, url_prefix="/api/celery")

MAX_BODY = 64 * 1024  # the largest valid body is a few hundred bytes
HANDLE_KEY = "scm.manager"
AFTER_PURGE_KEY = "scm.manager.after_purge"
CLUSTER_KEY = "scm.manager.cluster"
# after_purge(queues, purge_started=, purge_finished=) -> {queue: jobs failed}
AfterPurge = Callable[..., dict]


class Cluster(Protocol):
    """The hosts of the deployment (app.runtime.Runtime provides it)."""

    def cluster_view(self) -> dict: ...

    def host_command(self, node: str, op: str, kwargs: dict, timeout: float) -> dict: ...


def init_app(app: Flask, handle: ManagerHandle, *, after_purge: AfterPurge | None = None,
             cluster: Cluster | None = None) -> None:
    """Register the admin API and the health probe over this process's `handle`.

    `after_purge` fails the jobs whose messages a purge removed (the jobs package
    provides it through the composition root; this package does not import jobs).
    `cluster` adds every host to status and carries start/stop/restart to another host.
    """
    app.extensions[HANDLE_KEY] = handle
    app.extensions[AFTER_PURGE_KEY] = after_purge
    app.extensions[CLUSTER_KEY] = cluster
    app.register_blueprint(bp)
    register_error_handlers(app)
    # Wrapping wsgi_app is how Flask documents adding WSGI middleware; its stubs type the
    # attribute as a method.
    app.wsgi_app = HealthProbe(app.wsgi_app, handle.health)  # type: ignore[method-assign]


def manager_handle(app: Flask) -> ManagerHandle:
    """This process's handle on the instance's one manager: owner, proxy or none."""
    return app.extensions[HANDLE_KEY]


def _handle() -> ManagerHandle:
    return manager_handle(current_app)


def _arguments(op: AdminOp) -> dict:
    """The operation's keyword arguments, from the JSON body (POST) or none (GET)."""
    if op.http != "POST":
        return {}
    # Per-request cap (Flask 3.1): also bounds chunked bodies without a Content-Length.
    request.max_content_length = MAX_BODY
    raw = request.get_data(cache=True)
    data: object
    if not raw.strip():
        if op.body_required:
            raise APIError(400, "invalid_body", "a JSON object body is required")
        data = {}
    else:
        data = request.get_json(silent=True, force=True)
        if data is None:
            raise APIError(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(data, dict):
        raise APIError(400, "invalid_body", "the body must be a JSON object")
    try:
        return op.body_args.model_validate(data).model_dump()
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


def _purge(queues: list[str]) -> dict:
    started = time.time()
    result = dict(_handle().purge(queues))
    # The purge emptied the broker's lists, but the jobs would still be queued on Celery in
    # the store, and the jobs reconciler would publish them again: fail them instead.
    after_purge = current_app.extensions.get(AFTER_PURGE_KEY)
    try:
        result["jobs_failed"] = None if after_purge is None else after_purge(
            list(result.get("purged") or queues), purge_started=started,
            purge_finished=time.time())
    except Exception:  # the purge itself succeeded; say so, with the jobs part unknown
        log.exception("failing the jobs of purged queues %s failed", queues)
        result["jobs_failed"] = None
    return result


def _status() -> dict:
    result = dict(_handle().status())
    cluster: Cluster | None = current_app.extensions.get(CLUSTER_KEY)
    if cluster is None:
        return result
    try:
        result.update(cluster.cluster_view())
    except Exception as exc:  # the database is away: this host's part still answers
        log.warning("cannot read the host registry: %s", exc)
        result.update({"hosts": None, "reconciler": None})
    return result


def _on_host(op: AdminOp) -> Callable[..., dict]:
    """start/stop/restart: on this host, or on the body's `host` through the cluster."""
    def call(host: str | None = None, **kwargs: Any) -> dict:
        cluster: Cluster | None = current_app.extensions.get(CLUSTER_KEY)
        if host is None or cluster is None:
            return getattr(_handle(), op.name)(**kwargs)
        return cluster.host_command(host, op.name, kwargs, op.reply_timeout(kwargs))
    return call


# Operations whose route does more than forward to the manager.
_CALLS: dict[str, Callable[..., dict]] = {"purge": _purge, "status": _status}


def _admin_route(op: AdminOp) -> Callable:
    def view():
        kwargs = _arguments(op)
        call = _CALLS.get(op.name) or (_on_host(op) if op.body is not None
                                       else getattr(_handle(), op.name))
        return jsonify(call(**kwargs))
    view.__name__ = op.name
    view.__doc__ = op.summary
    return admin_required(view)


for _op in ADMIN_OPS.values():
    if _op.http is not None and not _op.public:
        bp.add_url_rule(f"/{_op.name}", endpoint=_op.name, view_func=_admin_route(_op),
                        methods=[_op.http])


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HostCommandError)
    def _host_error(exc: HostCommandError):
        return error_response(exc.http_status, exc.code, exc.message)

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

HEALTH_PATH = f"{bp.url_prefix}/health"


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
