"""OpenAPI paths of the pages' endpoints (issue 10): first-run setup, layouts, job
actions, printer profiles, worker log tails, and the two pages. Merged by app.openapi."""
from __future__ import annotations

from app.openapi_parts import (
    AUTH_ERRORS,
    BEARER,
    _body_schema,
    _error,
    _json,
)

_JOB_ID = {"name": "job_id", "in": "path", "required": True,
           "schema": {"type": "string", "maxLength": 64}}
_OBJECT = {"type": "object"}


def _html(summary: str) -> dict:
    return {"get": {"tags": ["web"], "summary": summary, "security": [],
                    "responses": {"200": {"description": "HTML page", "content": {
                        "text/html": {"schema": {"type": "string"}}}}}}}


def _setup() -> dict:
    body = {"type": "object", "required": ["token", "username", "password"], "properties": {
        "token": {"type": "string", "maxLength": 200},
        "username": {"type": "string", "minLength": 1, "maxLength": 64},
        "password": {"type": "string", "minLength": 8, "maxLength": 1024}}}
    return {
        "get": {"tags": ["auth"], "summary": "Whether the instance still needs its first admin",
                "security": [], "responses": {"200": {"description": "{needed: bool}",
                                                      "content": _json(_OBJECT)}}},
        "post": {"tags": ["auth"], "summary": "Create the first admin with the one-time token",
                 "description": "The token is printed at boot while no user exists.",
                 "security": [], "requestBody": {"required": True, "content": _json(body)},
                 "responses": {"201": {"description": "the admin", "content": _json(_OBJECT)},
                               "400": _error("invalid body or user name/password"),
                               "403": _error("wrong or used token, or a user exists"),
                               "413": _error("body too large")}},
    }


def _job_actions() -> dict:
    side = {"name": "side", "in": "path", "required": True,
            "schema": {"type": "string", "enum": ["front", "back"]}}
    missing = _error("no such job for this user")
    return {
        "/api/jobs/{job_id}": {"delete": {
            "tags": ["jobs"], "summary": "Cancel if needed, then remove the job and its files",
            "security": BEARER, "parameters": [_JOB_ID],
            "responses": {"204": {"description": "deleted"}, "404": missing, **AUTH_ERRORS}}},
        "/api/jobs/{job_id}/cancel": {"post": {
            "tags": ["jobs"], "summary": "Stop a queued or running job", "security": BEARER,
            "parameters": [_JOB_ID],
            "responses": {"200": {"description": "the job, now failed with cancelled true",
                                  "content": _json(_OBJECT)},
                          "404": missing, "409": _error("the job had finished"), **AUTH_ERRORS}}},
        "/api/jobs/{job_id}/thumbnail/{side}": {"get": {
            "tags": ["jobs"], "summary": "PNG of the result's first front or back page",
            "security": BEARER, "parameters": [_JOB_ID, side],
            "responses": {"200": {"description": "PNG", "content": {"image/png": {
                "schema": {"type": "string", "format": "binary"}}}},
                          "404": missing, "409": _error("no result yet"),
                          "503": _error("too many renders at once"), **AUTH_ERRORS}}},
    }


def _profile() -> dict:
    from app.profiles.api import ProfileBody

    profile = {"200": {"description": "the caller's printer profile", "content": _json(_OBJECT)}}
    return {
        "get": {"tags": ["profile"], "summary": "The caller's printer profile", "security": BEARER,
                "responses": {**profile, "404": _error("none saved"), **AUTH_ERRORS}},
        "put": {"tags": ["profile"], "summary": "Save the caller's printer offset and paper",
                "security": BEARER,
                "requestBody": {"required": True, "content": _json(_body_schema(ProfileBody))},
                "responses": {**profile, "400": _error("invalid body"),
                              "413": _error("body too large"), **AUTH_ERRORS}},
        "delete": {"tags": ["profile"], "summary": "Remove the caller's printer profile",
                   "security": BEARER,
                   "responses": {"204": {"description": "removed"}, "404": _error("none saved"),
                                 **AUTH_ERRORS}},
    }


def pages_paths() -> dict:
    return {
        "/api/auth/setup": _setup(),
        "/api/layouts": {"get": {
            "tags": ["web"], "summary": "Paper x card layouts with slot rectangles and marks",
            "security": [], "responses": {"200": {"description": "the table",
                                                  "content": _json(_OBJECT)}}}},
        **_job_actions(),
        "/api/profile": _profile(),
        "/admin": _html("The operator's dashboard (data from the admin API)"),
    }
