"""Auth in process: login, refresh, me, roles, rate limit, users CLI, admin bootstrap."""
from __future__ import annotations

import datetime

import pytest
from flask_jwt_extended import create_access_token

from app.auth import bootstrap_admin
from app.auth.users import UserError, UserStore
from app.settings import SettingsError, load_settings
from tests.conftest import make_settings
from tests.database import current_database_url
from tests.web.conftest import ADMIN, USER, bearer, login


def test_login_refresh_me(client):
    tokens = login(client, *USER)
    assert set(tokens) >= {"access_token", "refresh_token"}
    me = client.get("/api/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["username"] == USER[0] and me.get_json()["role"] == "user"

    refreshed = client.post("/api/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert refreshed.status_code == 200
    new_access = refreshed.get_json()["access_token"]
    assert client.get("/api/auth/me", headers=bearer(new_access)).status_code == 200


def test_refresh_needs_a_refresh_token_and_me_an_access_token(client):
    tokens = login(client, *USER)
    assert client.post("/api/auth/refresh", headers=bearer(tokens["access_token"])) \
        .status_code in (401, 422)
    assert client.get("/api/auth/me", headers=bearer(tokens["refresh_token"])) \
        .status_code in (401, 422)


@pytest.mark.parametrize("body", [
    {"username": "alice", "password": "wrong-password"},
    {"username": "nobody", "password": "alice-password-1"},
])
def test_wrong_credentials_are_401(client, body):
    response = client.post("/api/auth/login", json=body)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize("kwargs", [
    {"data": "not json", "content_type": "application/json"},
    {"json": ["alice", "x"]},
    {"json": {"username": "alice"}},
    {"json": {"username": 5, "password": None}},
    {"json": {"username": "", "password": ""}},
])
def test_bad_login_bodies_are_400(client, kwargs):
    response = client.post("/api/auth/login", **kwargs)
    assert response.status_code == 400
    assert set(response.get_json()["error"]) == {"code", "message"}


def test_missing_tampered_and_expired_tokens(app, client):
    assert client.get("/api/auth/me").status_code == 401
    access = login(client, *USER)["access_token"]
    head, payload, signature = access.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    response = client.get("/api/auth/me", headers=bearer(tampered))
    assert response.status_code in (401, 422)
    assert "error" in response.get_json()
    with app.app_context():
        expired = create_access_token(identity=USER[0], additional_claims={"role": "user"},
                                      expires_delta=datetime.timedelta(seconds=-10))
    response = client.get("/api/auth/me", headers=bearer(expired))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "token_expired"


def test_deleted_user_token_stops_working(app, client):
    access = login(client, *USER)["access_token"]
    app.extensions["scm.users"].delete(USER[0])
    assert client.get("/api/auth/me", headers=bearer(access)).status_code == 401


def test_login_is_rate_limited_per_client(make_app):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    client = app.test_client()
    for _ in range(3):
        client.post("/api/auth/login", json={"username": "admin", "password": "nope-nope"})
    response = client.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert "Retry-After" in response.headers
    # Another client address has its own budget.
    other = client.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]},
                        environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert other.status_code == 200


def test_admin_bootstrap_is_idempotent(tmp_path):
    store = UserStore(current_database_url() or tmp_path / "db.sqlite3")
    store.init_schema()
    bootstrap_admin(store, "root", "first-password")
    bootstrap_admin(store, "root", "second-password")  # never overwrites
    assert store.authenticate("root", "first-password").is_admin
    assert store.authenticate("root", "second-password") is None


def test_weak_bootstrap_password_refuses_to_start(tmp_path):
    store = UserStore(current_database_url() or tmp_path / "db.sqlite3")
    store.init_schema()
    with pytest.raises(SettingsError):
        bootstrap_admin(store, "root", "short")


def test_passwords_are_hashed(app):
    import sqlalchemy as sa

    from app.db.schema import users
    with app.extensions["scm.users"].engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)
                              .where(users.c.username == USER[0])).scalar_one()
    assert USER[1] not in stored and stored.startswith(("scrypt:", "pbkdf2:"))


def test_user_store_rejects_bad_names_and_duplicates(tmp_path):
    store = UserStore(current_database_url() or tmp_path / "db.sqlite3")
    store.init_schema()
    store.create("bob", "bob-password", "user")
    with pytest.raises(UserError):
        store.create("bob", "bob-password", "user")
    for name in ("", "a b", "x" * 65, "../etc"):
        with pytest.raises(UserError):
            store.create(name, "long-enough-pw")
    with pytest.raises(UserError):
        store.create("carol", "carol-pw", "superuser")


def test_users_cli_create_from_stdin_and_prompt(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "bob", "--admin", "--password-stdin"],
                           input="bob-password-1\n")
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["users", "create", "carol"],
                           input="carol-password-1\ncarol-password-1\n")
    assert result.exit_code == 0, result.output
    store = app.extensions["scm.users"]
    assert store.authenticate("bob", "bob-password-1").is_admin
    assert store.authenticate("carol", "carol-password-1").role == "user"
    again = runner.invoke(args=["users", "create", "bob", "--password-stdin"],
                          input="bob-password-2\n")
    assert again.exit_code != 0 and "already exists" in again.output


def test_production_refuses_default_or_weak_secret(tmp_path):
    for secret in (None, "short", "a" * 64):
        overrides = {"APP_ENV": "production", "INSTANCE_PATH": tmp_path / "i", "_env_file": None}
        if secret is not None:
            overrides["JWT_SECRET_KEY"] = secret
        with pytest.raises(SettingsError, match="JWT_SECRET_KEY"):
            load_settings(**overrides)
    good = make_settings(tmp_path, APP_ENV="production",
                         JWT_SECRET_KEY="Vb3k9Qz7LmN2pXr8TwY4sHc6JdF1gKa5")
    assert good.APP_ENV == "production"


def test_large_login_body_is_refused_unread(client):
    response = client.post("/api/auth/login", data=b"{" + b" " * 100_000 + b"}",
                           content_type="application/json")
    assert response.status_code == 413


def test_login_limit_per_forwarded_client_behind_trusted_proxy(tmp_path):
    from app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(tmp_path, TRUSTED_PROXIES=1, LOGIN_RATE_LIMIT="2 per minute"))
    client = app.test_client()

    def attempt(addr):
        return client.post("/api/auth/login", json={"username": "nobody", "password": "x" * 8},
                           headers={"X-Forwarded-For": addr}).status_code

    assert [attempt("203.0.113.5") for _ in range(3)] == [401, 401, 429]
    # Another client behind the same proxy is not locked out by the first one.
    assert attempt("203.0.113.6") == 401
