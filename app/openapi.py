"""GET /api/openapi.json: the HTTP surface, written by hand.

Hand-written rather than generated so it states the contract (status codes, error
shape, limits) instead of echoing whatever the code happens to accept; the fuzz tests
(tests/e2e/test_bad_input_e2e.py, schemathesis) hold the code to it. Request bodies of the admin API come from
the pydantic models that validate them, so the two cannot drift.
"""
from __future__ import annotations

import copy

from flask import Blueprint, Flask, current_app, jsonify

bp = Blueprint("openapi", __name__)

CARD_SIZES = ["standard", "japanese", "poker", "poker_half", "bridge", "bridge_square",
              "domino", "domino_square"]
PAPER_SIZES = ["letter", "tabloid", "a4", "a3", "archb"]
JOB_STATUSES = ["queued", "running", "succeeded", "failed"]
JOB_KINDS = ["sheets", "offset", "calibration"]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict:
    return {"description": description, "content": _json(_ref("Error"))}


AUTH_ERRORS = {
    "401": _error("missing, invalid, tampered or expired token"),
    "422": _error("token claims could not be verified"),
}
ADMIN_ERRORS = {**AUTH_ERRORS, "403": _error("the caller is not an admin")}
MANAGER_ERRORS = {"503": _error("no manager runs, or the broker did not answer")}
BEARER = [{"bearerAuth": []}]


def _body_schema(model) -> dict:
    """A pydantic model's JSON schema, inlined (no $defs) for OpenAPI 3.0 tools."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[1]]))
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return _nullable_for_30(inline(schema))


def _nullable_for_30(node):
    """pydantic writes `anyOf: [X, {type: null}]` (3.1); OpenAPI 3.0 says `nullable`."""
    if isinstance(node, dict):
        any_of = node.get("anyOf")
        if isinstance(any_of, list) and {"type": "null"} in any_of and len(any_of) == 2:
            other = next(item for item in any_of if item != {"type": "null"})
            merged = {k: v for k, v in node.items() if k not in ("anyOf", "title")}
            merged.update(_nullable_for_30(other))
            merged["nullable"] = True
            return merged
        return {key: _nullable_for_30(value) for key, value in node.items()
                if key != "title"}
    if isinstance(node, list):
        return [_nullable_for_30(item) for item in node]
    return node


def _admin_paths() -> dict:
    from app.supervisor.api import PurgeBody, RestartBody, StartBody, StopBody

    def verb(summary: str, model, *, required: bool = False) -> dict:
        return {"post": {
            "tags": ["admin"], "summary": summary, "security": BEARER,
            "requestBody": {"required": required, "content": _json(_body_schema(model))},
            "responses": {"200": {"description": "the manager's answer",
                                  "content": _json({"type": "object"})},
                          "400": _error("invalid body"), "413": _error("body too large"),
                          **ADMIN_ERRORS, **MANAGER_ERRORS},
        }}

    def read(summary: str) -> dict:
        return {"get": {
            "tags": ["admin"], "summary": summary, "security": BEARER,
            "responses": {"200": {"description": summary, "content": _json({"type": "object"})},
                          **ADMIN_ERRORS, **MANAGER_ERRORS},
        }}

    return {
        "/api/celery/health": {"get": {
            "tags": ["public"], "summary": "Liveness of the Celery side, from cached state",
            "security": [],
            "responses": {"200": {"description": "healthy or degraded",
                                  "content": _json(_ref("Health"))},
                          "503": {"description": "unhealthy", "content": _json(_ref("Health"))}},
        }},
        "/api/celery/status": {"get": {
            "tags": ["admin"], "summary": "Workers, mode, broker and queue depths",
            "security": BEARER,
            "responses": {"200": {"description": "status", "content": _json(_ref("Status"))},
                          **ADMIN_ERRORS, **MANAGER_ERRORS},
        }},
        "/api/celery/start": verb("Start workers (clears FAILED)", StartBody),
        "/api/celery/stop": verb("Stop workers warm, then kill after `timeout` s", StopBody),
        "/api/celery/restart": verb("Restart one queue's worker, or all", RestartBody),
        "/api/celery/tasks": read("Active, reserved and scheduled tasks per worker"),
        "/api/celery/stats": read("Celery worker statistics"),
        "/api/celery/purge": {"post": {
            "tags": ["admin"], "summary": "Empty only the named queues", "security": BEARER,
            "requestBody": {"required": True, "content": _json(_body_schema(PurgeBody))},
            "responses": {"200": {"description": "messages removed per queue",
                                  "content": _json(_ref("Purged"))},
                          "400": _error("invalid body"), "413": _error("body too large"),
                          **ADMIN_ERRORS, **MANAGER_ERRORS},
        }},
    }


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
            "tags": ["auth"], "summary": "A new access token from a refresh token",
            "description": "Send the refresh token as the bearer token.",
            "security": BEARER,
            "responses": {"200": {"description": "a new access token",
                                  "content": _json(_ref("Tokens"))}, **AUTH_ERRORS},
        }},
        "/api/auth/me": {"get": {
            "tags": ["auth"], "summary": "The caller's user name and role", "security": BEARER,
            "responses": {"200": {"description": "the caller", "content": _json(_ref("User"))},
                          **AUTH_ERRORS},
        }},
    }


def _jobs_paths() -> dict:
    # Mirrors app/jobs/api.py and app/jobs/validation.py (the jobs package owns the rules).
    accepted = {"description": "accepted; poll status_url",
                "content": _json(_ref("JobAccepted"))}
    job_errors = {"400": _error("invalid input"), **AUTH_ERRORS,
                  "413": _error("upload larger than MAX_UPLOAD_MB")}
    flag = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}
    job_id = {"name": "job_id", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": 64}}
    files = {"type": "array", "items": {"type": "string", "format": "binary"}}
    return {
        "/api/jobs/sheets": {"post": {
            "tags": ["jobs"], "summary": "Make printable card sheets from uploaded images",
            "security": BEARER,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["fronts"],
                "properties": {
                    "fronts": {**files, "description": "one image per card"},
                    "back": {"type": "string", "format": "binary",
                             "description": "one common back image"},
                    "double_sided": {**files, "description": "matched to fronts by file name"},
                    "card_size": {"type": "string", "enum": CARD_SIZES},
                    "paper_size": {"type": "string", "enum": PAPER_SIZES},
                    "only_fronts": flag,
                    "crop": {"type": "string", "maxLength": 1000,
                             "description": "6.5 (percent), 3mm or 0.125in"},
                    "extend_corners": {"type": "integer", "minimum": 0,
                                       "description": "px at 300 ppi"},
                    "ppi": {"type": "integer", "minimum": 72, "maximum": 1200},
                    "quality": {"type": "integer", "minimum": 0, "maximum": 100},
                    "skip": {"type": "string", "maxLength": 2048,
                             "description": "comma list of card slots to leave empty"},
                    "name": {"type": "string", "maxLength": 100},
                }}}}},
            "responses": {"202": accepted, **job_errors},
        }},
        "/api/jobs/offset": {"post": {
            "tags": ["jobs"], "summary": "Shift the back pages of a sheet PDF",
            "description": "Give either `pdf` or `source_job_id` (a succeeded job of yours).",
            "security": BEARER,
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object",
                "properties": {
                    "pdf": {"type": "string", "format": "binary"},
                    "source_job_id": {"type": "string", "maxLength": 64},
                    "x": {"type": "integer", "minimum": -1500, "maximum": 1500,
                          "description": "px at 300 ppi; right is +"},
                    "y": {"type": "integer", "minimum": -1500, "maximum": 1500,
                          "description": "px at 300 ppi; down is +"},
                }}}}},
            "responses": {"202": accepted, **job_errors},
        }},
        "/api/jobs/calibration": {"post": {
            "tags": ["jobs"], "summary": "A calibration sheet to measure the printer's offset",
            "security": BEARER,
            "requestBody": {"required": True, "content": {
                **_json({"type": "object", "additionalProperties": False,
                         "properties": {"paper_size": {"type": "string",
                                                       "enum": PAPER_SIZES}}}),
                "application/x-www-form-urlencoded": {"schema": {
                    "type": "object",
                    "properties": {"paper_size": {"type": "string", "enum": PAPER_SIZES}}}},
            }},
            "responses": {"202": accepted, **job_errors},
        }},
        "/api/jobs": {"get": {
            "tags": ["jobs"], "summary": "The caller's jobs (admins: everyone's), newest first",
            "security": BEARER,
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                            "maximum": 500}},
                {"name": "offset", "in": "query", "schema": {"type": "integer",
                                                             "minimum": 0}},
                {"name": "status", "in": "query", "schema": {"type": "string",
                                                             "enum": JOB_STATUSES}},
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
        "Tokens": {"type": "object", "required": ["access_token"], "properties": {
            "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
            "token_type": {"type": "string"}}},
        "User": {"type": "object", "required": ["username", "role"], "properties": {
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
            "state": {"type": "string", "enum": ["STARTING", "RUNNING", "BACKOFF", "STOPPING",
                                                 "STOPPED", "FAILED"]},
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
            "manager": {"type": "object"}}},
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
                    "id": {"type": "string"}, "kind": {"type": "string", "enum": JOB_KINDS},
                    "status": {"type": "string", "enum": JOB_STATUSES},
                    "progress": {"type": "number", "minimum": 0, "maximum": 1},
                    "message": {"type": "string", "nullable": True},
                    "mode": {"type": "string", "enum": ["celery", "threads"], "nullable": True},
                    "error": {"type": "string", "nullable": True},
                    "created_at": nullable_time, "started_at": nullable_time,
                    "finished_at": nullable_time,
                    "result_url": {"type": "string", "nullable": True}}},
        "JobList": {"type": "object", "properties": {
            "jobs": {"type": "array", "items": _ref("Job")}}},
    }


def build_spec() -> dict:
    from app.openapi_pages import pages_paths

    paths = {**_auth_paths(), **_jobs_paths(), **_admin_paths(), **_other_paths()}
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
        spec = current_app.extensions["scm.openapi"] = build_spec()
    return jsonify(spec)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
