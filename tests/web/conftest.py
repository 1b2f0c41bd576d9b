"""Fixtures for in-process tests of the web layer: an app per test, users, tokens."""
from __future__ import annotations

import pytest

from app import create_app
from app.runtime import runtime_of
from tests.conftest import make_settings

ADMIN = ("admin", "admin-password-1")
USER = ("alice", "alice-password-1")


@pytest.fixture(autouse=True)
def _database_backend(db_backend):
    """Every web and auth test runs on SQLite and on PostgreSQL (see tests.database)."""
    return db_backend


@pytest.fixture
def make_app(tmp_path):
    """Build an app on this test's own instance folder, with settings overrides."""
    created = []

    def build(**overrides):
        values = dict(ADMIN_USERNAME=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
        values.update(overrides)
        app = create_app(make_settings(tmp_path, **values))
        created.append(app)
        return app

    yield build
    for app in created:
        runtime_of(app).close()


@pytest.fixture
def app(make_app):
    app = make_app()
    app.extensions["scm.users"].create(USER[0], USER[1], "user")
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def login(client, username: str, password: str) -> dict:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin_headers(client):
    return bearer(login(client, *ADMIN)["access_token"])


@pytest.fixture
def user_headers(client):
    return bearer(login(client, *USER)["access_token"])


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch):
    # scrypt's deliberate cost (~0.1 s a hash) is for production; tests hash hundreds.
    from werkzeug.security import generate_password_hash

    import app.auth.users as users
    monkeypatch.setattr(users, "generate_password_hash",
                        lambda password: generate_password_hash(password, "pbkdf2:sha256:1000"))
