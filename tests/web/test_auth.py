"""Auth in process: login, refresh, me, roles, rate limit, users CLI, admin bootstrap."""
from __future__ import annotations

import datetime
import threading
import time

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


def _attempt(client, username, password, address="198.51.100.7"):
    started = time.monotonic()
    response = client.post("/api/auth/login", json={"username": username, "password": password},
                           environ_base={"REMOTE_ADDR": address})
    return response, time.monotonic() - started


def test_login_limit_locks_out_everyone_behind_one_address_right_password_included(make_app):
    # The finding: past the per-address limit even the right password got 429.
    app = make_app(LOGIN_RATE_LIMIT="3 per minute", LOGIN_THROTTLE_DELAY=0.5)
    app.extensions["scm.users"].create(*USER)
    client = app.test_client()
    for name in ("admin", "alice", "nobody"):  # an attacker sprays names from one address
        assert _attempt(client, name, "nope-nope")[0].status_code == 401
    wrong, waited = _attempt(client, "admin", "nope-nope")
    assert wrong.status_code == 429 and wrong.get_json()["error"]["code"] == "rate_limited"
    assert int(wrong.headers["Retry-After"]) >= 1 and waited >= 0.5
    # Everyone else behind that address still gets in, after the short delay.
    for username, password in (ADMIN, USER):
        right, waited = _attempt(client, username, password)
        assert right.status_code == 200, right.get_json()
        assert 0.5 <= waited < 5
    # Another address is not throttled at all.
    other, _waited = _attempt(client, "nobody", "nope-nope", address="192.0.2.9")
    assert other.status_code == 401  # a throttled wrong password would be 429


def test_login_limit_per_account_across_addresses(make_app):
    app = make_app(LOGIN_RATE_LIMIT="100 per minute", LOGIN_ACCOUNT_RATE_LIMIT="3 per minute",
                   LOGIN_THROTTLE_DELAY=0.5)
    client = app.test_client()
    for i in range(3):  # one guess per address: only the account limit can see it
        assert _attempt(client, "admin", "nope-nope", f"203.0.113.{i}")[0].status_code == 401
    wrong, waited = _attempt(client, "admin", "nope-nope", "203.0.113.50")
    assert wrong.status_code == 429 and waited >= 0.5
    right, waited = _attempt(client, *ADMIN, address="203.0.113.51")
    assert right.status_code == 200 and waited >= 0.5
    # Other accounts are not slowed down by it.
    assert _attempt(client, "alice", "nope-nope", "203.0.113.52")[0].status_code == 401


def test_throttled_logins_hold_few_threads():
    from app.auth.throttle import LoginThrottle, ThrottlePolicy

    release = threading.Event()
    policy = ThrottlePolicy("1 per minute", "1 per minute", delay=0.2, concurrency=1)
    throttle = LoginThrottle(policy, lambda: None, sleep=lambda _s: release.wait(10))
    entered = []

    def hold():
        with throttle.held() as ok:
            entered.append(ok)

    first = threading.Thread(target=hold)
    first.start()
    time.sleep(0.05)
    with throttle.held() as second:
        assert second is False  # the only slot is taken: refused, not queued forever
    release.set()
    first.join(5)
    assert entered == [True]


def test_login_throttle_storage_outage_counts_in_memory():
    from app.auth.throttle import LoginThrottle, ThrottlePolicy

    def broken():
        raise ConnectionError("storage down")

    throttle = LoginThrottle(ThrottlePolicy("2 per minute", "9 per minute", 0, 1), broken)
    assert not throttle.over_limit("192.0.2.1", "x")
    throttle.record_failure("192.0.2.1", "x")
    throttle.record_failure("192.0.2.1", "y")
    assert throttle.over_limit("192.0.2.1", "z")


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
