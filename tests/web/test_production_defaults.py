"""Issue 12, point 7: defaults that are safe in production (in process).

The same checks against a real start_with_celery.py are in
tests/e2e/test_production_defaults_e2e.py.
"""
from __future__ import annotations

import pytest

from app.settings import SettingsError, load_settings
from app.strength import password_problem, secret_problem
from tests.conftest import make_settings
from tests.web.conftest import ADMIN, bearer, login

STRONG_SECRET = "Vb3k9Qz7LmN2pXr8TwY4sHc6JdF1gKa5-t0Rq"
STRONG_ADMIN = "Pale-otter-jumps-7-quietly"


def production(tmp_path, **overrides):
    values = dict(APP_ENV="production", JWT_SECRET_KEY=STRONG_SECRET, _env_file=None,
                  INSTANCE_PATH=tmp_path / "instance")
    values.update(overrides)
    return load_settings(**values)


@pytest.mark.parametrize("secret", [
    "abcdefghabcdefghabcdefghabcdefgh",        # the finding: 8 distinct characters, repeated
    "abcdefghijklmnopqrstuvwxyz0123456789",    # one long sequence
    "passwordpasswordpasswordpassword",        # a word, repeated
    "qwertyuiopasdfghjklzxcvbnm1234567890",    # a keyboard walk
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
])
def test_production_refuses_patterned_jwt_secret(tmp_path, secret):
    with pytest.raises(SettingsError, match="JWT_SECRET_KEY is too weak"):
        production(tmp_path, JWT_SECRET_KEY=secret)
    # Outside production the same value is accepted (tests and demos use such values).
    assert make_settings(tmp_path, JWT_SECRET_KEY=secret).JWT_SECRET_KEY == secret


def test_production_accepts_a_random_jwt_secret(tmp_path):
    import secrets

    for _ in range(20):
        value = secrets.token_urlsafe(32)
        assert secret_problem(value) is None, value
    assert production(tmp_path).APP_ENV == "production"


@pytest.mark.parametrize("password", ["password", "admin1234", "Password1", "silhouette1",
                                      "qwertyuiop", "rootroot"])
def test_production_refuses_weak_admin_password(tmp_path, password):
    with pytest.raises(SettingsError, match="ADMIN_PASSWORD is too weak"):
        production(tmp_path, ADMIN_USERNAME="root", ADMIN_PASSWORD=password)


def test_admin_password_may_not_be_built_on_the_username(tmp_path):
    assert password_problem("jonathan2024", "jonathan2024") is not None
    assert production(tmp_path, ADMIN_USERNAME="root",
                      ADMIN_PASSWORD=STRONG_ADMIN).ADMIN_PASSWORD == STRONG_ADMIN


def test_metrics_public_by_default_in_production(make_app):
    # Refused (metrics off, and said so) when production has no METRICS_TOKEN.
    client = make_app(APP_ENV="production", JWT_SECRET_KEY=STRONG_SECRET,
                      ADMIN_PASSWORD=STRONG_ADMIN).test_client()
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "metrics_disabled"
    assert "METRICS_TOKEN" in response.get_json()["error"]["message"]


def test_production_metrics_with_token(make_app):
    client = make_app(APP_ENV="production", JWT_SECRET_KEY=STRONG_SECRET,
                      ADMIN_PASSWORD=STRONG_ADMIN, METRICS_TOKEN="m-" + "t" * 30).test_client()
    assert client.get("/metrics").status_code == 401
    scraped = client.get("/metrics", headers=bearer("m-" + "t" * 30))
    assert scraped.status_code == 200 and b"scm_jobs" in scraped.data


@pytest.mark.parametrize("method, path", [
    ("get", "/"), ("get", "/api/openapi.json"), ("get", "/api/celery/health"),
    ("get", "/api/jobs"), ("get", "/no/such/page"), ("get", "/api/no/such"),
    ("post", "/api/auth/login"), ("get", "/assets/app.js"), ("get", "/metrics"),
])
def test_responses_lack_security_headers(client, method, path):
    response = getattr(client, method)(path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_json_errors_are_nosniff(client):
    response = client.get("/api/jobs")  # 401 JSON
    assert response.status_code == 401 and response.is_json
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_page_keeps_its_own_policy_plus_frame_ancestors(client):
    policy = client.get("/").headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'self'") and "frame-ancestors 'none'" in policy


def test_token_responses_lack_cache_control_no_store(client):
    tokens = client.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert tokens.status_code == 200 and tokens.headers["Cache-Control"] == "no-store"
    refreshed = client.post("/api/auth/refresh",
                            headers=bearer(tokens.get_json()["refresh_token"]))
    assert refreshed.status_code == 200 and refreshed.headers["Cache-Control"] == "no-store"
    me = client.get("/api/auth/me", headers=bearer(login(client, *ADMIN)["access_token"]))
    assert me.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method, path, allowed", [
    ("get", "/api/auth/login", {"POST"}),
    ("delete", "/api/openapi.json", {"GET", "HEAD"}),
    ("put", "/api/auth/me", {"GET", "HEAD"}),
])
def test_405s_lack_allow(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
