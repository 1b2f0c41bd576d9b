"""GET /api/openapi.json: the HTTP surface.

Request bodies are generated from the pydantic models that validate them (the card
engine's option sets for jobs, the admin API's bodies), and limits that are settings
(upload size and count) come from the app's settings, so the document cannot drift from
the code. Only what no model describes is written here: file parts, responses, auth.
tests/web/test_openapi_and_page.py holds the document's limits to the code's; the fuzz
tests (tests/e2e/test_bad_input_e2e.py, schemathesis) hold the code to the document.
"""
from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify

from app.cards.models import CalibrationOptions, OffsetOptions, SheetOptions
from app.jobs.api import MAX_LIST
from app.jobs.engine import KINDS
from app.jobs.names import JOB_STATUSES
from app.openapi_pages import pages_paths
from app.openapi_parts import (
    AUTH_ERRORS,
    BEARER,
    _body_schema,
    _error,
    _json,
    _ref,
)
from app.settings import Settings
from app.supervisor.admin_ops import admin_openapi_paths
from app.supervisor.worker_slot import STATES

bp = Blueprint("openapi", __name__)

JOB_ID_MAX_CHARS = 64          # longer ids are answered 404 without a lookup (app.jobs.api)


def _form_schema(model, files: dict | None = None, required: tuple[str, ...] = ()) -> dict:
    """A model's fields as form fields, after the file parts. A form field cannot be null
    (leaving it out means the default), and the form ignores fields it does not know."""
    fields = _body_schema(model)["properties"]
    for schema in fields.values():
        schema.pop("nullable", None)
        if schema.get("default") is None:
            schema.pop("default", None)
    schema = {"type": "object", "properties": {**(files or {}), **fields}}
    if required:
        schema["required"] = list(required)
    return schema


def _admin_paths() -> dict:
    return admin_openapi_paths(_body_schema)


def _auth_paths() -> dict:
    return {
        "/api/auth/login": {"post": {
            "tags": ["auth"], "summary": "Trade a user name and password for tokens",
            "security": [],
            "requestBody": {"required": True, "content": _json({
                "type": "object", "required": ["username", "password"],
                "properties": {"username": {"type": "string", "minLength": 1, "maxLength": 64},
                               "password": {"type": "string", "minLength": 1}}})},
            "responses": {"200": {"description": "tokens", "content": _json(_ref("Tokens"))},
                          "400": _error("invalid body"),
                          "401": _error("wrong user name or password"),
                          "413": _error("body too large"),
                          "429": _error("too many login attempts from this address")},
        }},
        "/api/auth/refresh": {"post": {
            "tags": ["auth"], "summary": "New tokens for a refresh token (which is used up)",
            "description": "Send the refresh token as the bearer token. Each refresh token "
                           "works once: the answer carries the next one, which replaces it. "
                           "Presenting a used refresh token again revokes every refresh "
                           "token of that sign-in (401 `refresh_token_reused`).",
            "security": BEARER,
            "responses": {"200": {"description": "a new access token and refresh token",
                                  "content": _json(_ref("Tokens"))}, **AUTH_ERRORS},
        }},
        "/api/auth/me": {"get": {
            "tags": ["auth"], "summary": "The caller's user name and role", "security": BEARER,
            "responses": {"200": {"description": "the caller", "content": _json(_ref("User"))},
                          **AUTH_ERRORS},
        }},
    }


def _jobs_paths(settings: Settings) -> dict:
    accepted = {"description": "accepted; poll status_url",
                "content": _json(_ref("JobAccepted"))}
    job_errors = {"400": _error("invalid input"), **AUTH_ERRORS,
                  "413": _error(f"upload larger than {settings.MAX_UPLOAD_MB} MB "
                                "(MAX_UPLOAD_MB)")}
    job_id = {"name": "job_id", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": JOB_ID_MAX_CHARS}}
    image = {"type": "string", "format": "binary"}
    files = {"type": "array", "items": image, "maxItems": settings.MAX_UPLOAD_FILES}
    per_job = f"at most {settings.MAX_UPLOAD_FILES} files per job in all (MAX_UPLOAD_FILES)"
    sheet_files = {
        "fronts": {**files, "description": f"one image per card; {per_job}"},
        "back": {**image, "description": "one common back image"},
        "double_sided": {**files, "description": "matched to fronts by file name"},
    }
    offset_files = {
        "pdf": {"type": "string", "format": "binary"},
        "source_job_id": {"type": "string", "maxLength": JOB_ID_MAX_CHARS},
    }
    return {
        "/api/jobs/sheets": {"post": {
            "tags": ["jobs"], "summary": "Make printable card sheets from uploaded images",
            "security": BEARER,
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": _form_schema(SheetOptions, sheet_files, required=("fronts",))}}},
            "responses": {"202": accepted, **job_errors},
        }},
        "/api/jobs/offset": {"post": {
            "tags": ["jobs"], "summary": "Shift the back pages of a sheet PDF",
            "description": "Give either `pdf` or `source_job_id` (a succeeded job of yours).",
            "security": BEARER,
            "requestBody": {"required": True, "content": {"multipart/form-data": {
                "schema": _form_schema(OffsetOptions, offset_files)}}},
            "responses": {"202": accepted, **job_errors},
        }},
        "/api/jobs/calibration": {"post": {
            "tags": ["jobs"], "summary": "A calibration sheet to measure the printer's offset",
            "security": BEARER,
            "requestBody": {"required": True, "content": {
                **_json(_body_schema(CalibrationOptions)),
                "application/x-www-form-urlencoded": {
                    "schema": _form_schema(CalibrationOptions)},
            }},
            "responses": {"202": accepted, **job_errors},
        }},
        "/api/jobs": {"get": {
            "tags": ["jobs"], "summary": "The caller's jobs (admins: everyone's), newest first",
            "security": BEARER,
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": MAX_LIST}},
                {"name": "offset", "in": "query", "schema": {"type": "integer",
                                                             "minimum": 0}},
                {"name": "status", "in": "query", "schema": {"type": "string",
                                                             "enum": list(JOB_STATUSES)}},
            ],
            "responses": {"200": {"description": "jobs", "content": _json(_ref("JobList"))},
                          "400": _error("invalid query"), **AUTH_ERRORS},
        }},
        "/api/jobs/{job_id}": {"get": {
            "tags": ["jobs"], "summary": "A job's status and progress", "security": BEARER,
            "parameters": [job_id],
            "responses": {"200": {"description": "the job", "content": _json(_ref("Job"))},
                          "404": _error("no such job for this user"), **AUTH_ERRORS},
        }},
        "/api/jobs/{job_id}/result": {"get": {
            "tags": ["jobs"], "summary": "Download the finished PDF", "security": BEARER,
            "parameters": [job_id],
            "responses": {"200": {"description": "the PDF",
                                  "content": {"application/pdf": {"schema": {
                                      "type": "string", "format": "binary"}}}},
                          "404": _error("no such job for this user"),
                          "409": _error("the job failed or has not finished"),
                          "410": _error("the output was cleaned up"), **AUTH_ERRORS},
        }},
        "/api/jobs/{job_id}/cutfile": {"get": {
            "tags": ["jobs"], "summary": "Cut lines (SVG or DXF, mm) for a sheets job's layout",
            "security": BEARER,
            "parameters": [job_id, {"name": "format", "in": "query", "required": False,
                                    "schema": {"type": "string", "enum": ["svg", "dxf"], "default": "svg"}}],
            "responses": {"200": {"description": "one closed path per card slot; marks on their own layer",
                                  "content": {mime: {"schema": {"type": "string", "format": "binary"}}
                                              for mime in ("image/svg+xml", "application/dxf")}},
                          "400": _error("bad format, or not a sheets job"),
                          "404": _error("no such job for this user"), **AUTH_ERRORS},
        }},
    }


def _other_paths() -> dict:
    return {
        "/metrics": {"get": {
            "tags": ["operations"], "summary": "Prometheus metrics",
            "description": "Needs `Authorization: Bearer <METRICS_TOKEN>` when that is set.",
            "security": [{}, {"metricsToken": []}],
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": _error("METRICS_TOKEN is set and was not given")},
        }},
        "/api/openapi.json": {"get": {
            "tags": ["operations"], "summary": "This document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.0 document",
                                  "content": _json({"type": "object"})}},
        }},
        "/": {"get": {
            "tags": ["web"], "summary": "The card maker's page", "security": [],
            "responses": {"200": {"description": "HTML page",
                                  "content": {"text/html": {"schema": {"type": "string"}}}}},
        }},
    }


def _schemas() -> dict:
    nullable_number = {"type": "number", "nullable": True}
    nullable_time = {"type": "string", "format": "date-time", "nullable": True}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "Tokens": {"type": "object", "required": ["access_token", "refresh_token"],
                   "properties": {"access_token": {"type": "string"},
                                  "refresh_token": {"type": "string"},
                                  "token_type": {"type": "string"}}},
        "User": {"type": "object", "required": ["id", "username", "role"], "properties": {
            "id": {"type": "string", "description": "immutable; what tokens and jobs name"},
            "username": {"type": "string"}, "role": {"type": "string", "enum": ["admin", "user"]},
            "created_at": {"type": "number"}}},
        "Health": {"type": "object",
                   "required": ["healthy", "status", "mode", "uptime_seconds", "restart_count",
                                "workers"],
                   "properties": {
                       "healthy": {"type": "boolean"},
                       "status": {"type": "string", "enum": ["healthy", "degraded", "unhealthy"]},
                       "mode": {"type": "string", "enum": ["celery", "threads"]},
                       "uptime_seconds": {"type": "number"},
                       "restart_count": {"type": "integer"},
                       "workers": {"type": "object", "properties": {
                           "running": {"type": "integer"}, "expected": {"type": "integer"}}}}},
        "Worker": {"type": "object", "properties": {
            "name": {"type": "string"}, "queue": {"type": "string"},
            "pid": {"type": "integer", "nullable": True},
            "state": {"type": "string", "enum": list(STATES)},
            "pool_size": {"type": "integer"}, "started_at": nullable_number,
            "uptime": nullable_number, "restarts": {"type": "integer"},
            "restarts_by_reason": {"type": "object",
                                   "additionalProperties": {"type": "integer"}},
            "last_exit": {"type": "object", "nullable": True},
            "last_error": {"type": "string", "nullable": True},
            "responsive": {"type": "boolean", "nullable": True},
            "cpu_percent": {"type": "number", "nullable": True},
            "rss_bytes": {"type": "integer", "nullable": True,
                          "description": "main process only"},
            "memory_bytes": {"type": "integer", "nullable": True,
                             "description": "PSS of the whole process tree"},
            "log_file": {"type": "string", "nullable": True}}},
        "Status": {"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["celery", "threads"]},
            "workers": {"type": "array", "items": _ref("Worker")},
            "broker": {"type": "object"},
            "queues": {"type": "object",
                       "additionalProperties": {"type": "integer", "nullable": True}},
            "manager": {"type": "object"},
            "node": {"type": "string", "description": "this host's NODE_NAME"},
            "hosts": {"type": "array", "nullable": True, "items": _ref("Host"),
                      "description": "every host of the cluster (null: registry unreadable)"},
            "reconciler": _ref("ReconcilerLease")}},
        "Host": {"type": "object",
                 "required": ["node", "role", "alive", "state", "workers"], "properties": {
                     "node": {"type": "string"},
                     "role": {"type": "string", "enum": ["web", "worker"]},
                     "pid": {"type": "integer"},
                     "alive": {"type": "boolean"},
                     "state": {"type": "string", "enum": ["alive", "lost"],
                               "description": "lost: no heartbeat for 3 intervals"},
                     "seen_seconds_ago": {"type": "number"},
                     "heartbeat_interval": {"type": "number"},
                     "started_at": {"type": "number"},
                     "mode": {"type": "string", "nullable": True},
                     "workers": {"type": "array", "items": _ref("HostWorker")}}},
        "HostWorker": {"type": "object", "properties": {
            "name": {"type": "string"}, "queue": {"type": "string", "nullable": True},
            "state": {"type": "string"}, "pid": {"type": "integer", "nullable": True},
            "restarts": {"type": "integer"},
            "memory_bytes": {"type": "integer", "nullable": True},
            "rss_bytes": {"type": "integer", "nullable": True},
            "responsive": {"type": "boolean", "nullable": True},
            "uptime": nullable_number,
            "last_error": {"type": "string", "nullable": True},
            "last_seen": {"type": "number", "description": "epoch s of that heartbeat"}}},
        "ReconcilerLease": {"type": "object", "nullable": True, "properties": {
            "holder": {"type": "string", "description": "<node>/<pid>-<random>"},
            "node": {"type": "string"},
            "token": {"type": "integer", "description": "fencing token: +1 per takeover"},
            "expires_in": {"type": "number"},
            "here": {"type": "boolean"}}},
        "Purged": {"type": "object", "required": ["purged"], "properties": {
            "purged": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "messages removed per queue"},
            "jobs_failed": {"type": "object", "nullable": True,
                            "additionalProperties": {"type": "integer"},
                            "description": "jobs marked failed per queue (their messages "
                                           "were purged); null if that step failed"}}},
        "JobAccepted": {"type": "object", "required": ["id", "status_url"], "properties": {
            "id": {"type": "string"}, "status_url": {"type": "string"}}},
        "Job": {"type": "object",
                "required": ["id", "kind", "status", "progress"],
                "properties": {
                    "id": {"type": "string"}, "kind": {"type": "string", "enum": list(KINDS)},
                    "status": {"type": "string", "enum": list(JOB_STATUSES)},
                    "progress": {"type": "number", "minimum": 0, "maximum": 1},
                    "message": {"type": "string", "nullable": True},
                    "mode": {"type": "string", "enum": ["celery", "threads"], "nullable": True},
                    "error": {"type": "string", "nullable": True},
                    "created_at": nullable_time, "started_at": nullable_time,
                    "finished_at": nullable_time,
                    "result_url": {"type": "string", "nullable": True},
                    "owner": {"type": "string",
                              "description": "the owner's user id (immutable)"},
                    "owner_name": {"type": "string", "nullable": True,
                                   "description": "the owner's user name; null once the "
                                                  "user is deleted"}}},
        "JobList": {"type": "object", "properties": {
            "jobs": {"type": "array", "items": _ref("Job")}}},
    }


def build_spec(settings: Settings) -> dict:
    paths = {**_auth_paths(), **_jobs_paths(settings), **_admin_paths(), **_other_paths()}
    for path, operations in pages_paths().items():
        paths[path] = {**paths.get(path, {}), **operations}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Silhouette Card Maker",
            "version": "1.0.0",
            "description": "Printable card sheets for Silhouette cutters, made by self-supervised "
                           "Celery workers. Errors are `{\"error\": {\"code\", \"message\"}}`.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "metricsToken": {"type": "http", "scheme": "bearer"},
            },
            "schemas": _schemas(),
        },
    }


@bp.get("/api/openapi.json")
def openapi_json():
    spec = current_app.extensions.get("scm.openapi")
    if spec is None:
        spec = current_app.extensions["scm.openapi"] = build_spec(current_app.config["SETTINGS"])
    return jsonify(spec)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
