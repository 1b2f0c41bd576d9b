"""Auth through a real server process: every admin endpoint, token abuse, rate limit,
and production's refusal of a default secret."""
from __future__ import annotations

import subprocess
import sys
import time

import jwt
import pytest

from tests.e2e.conftest import ADMIN, ROOT, SECRET, add_user, base_env

pytestmark = pytest.mark.slow

ADMIN_ENDPOINTS = [("get", "/api/celery/status"), ("post", "/api/celery/start"),
                   ("post", "/api/celery/stop"), ("post", "/api/celery/restart"),
                   ("get", "/api/celery/tasks"), ("get", "/api/celery/stats"),
                   ("post", "/api/celery/purge")]


def _forged(user_id: str, role: str, *, secret: str = SECRET, exp_offset: float = 600) -> str:
    now = int(time.time())
    claims = {"sub": user_id, "role": role, "ver": 0, "type": "access", "fresh": False,
              "jti": f"forged-{now}", "iat": now - 1000, "nbf": now - 1000,
              "exp": now + int(exp_offset)}
    return jwt.encode(claims, secret, algorithm="HS256")


def test_auth_flows_and_every_admin_endpoint(start_server):
    server = start_server("run", LOGIN_RATE_LIMIT="8 per minute")
    server.wait_healthy(60)
    add_user(server, "alice", "alice-password-1")

    # login, refresh, me
    tokens = server.login()
    me = server.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200 and me.json() == {**me.json(), "username": ADMIN[0],
                                                   "role": "admin"}
    refreshed = server.post("/api/auth/refresh",
                            headers={"Authorization": f"Bearer {tokens['refresh_token']}"})
    assert refreshed.status_code == 200 and refreshed.json()["access_token"]

    user = {"Authorization": f"Bearer {server.login('alice', 'alice-password-1')['access_token']}"}
    admin_access = tokens["access_token"]
    head, payload, signature = admin_access.split(".")
    bad_tokens = {
        "tampered signature": f"{head}.{payload}.{signature[::-1]}",
        "payload swapped to another user's": f"{head}.{user['Authorization'].split('.')[1]}."
                                             f"{signature}",
        "expired": _forged(ADMIN[0], "admin", exp_offset=-60),
        "signed with another key": _forged(ADMIN[0], "admin", secret="not-the-server-secret"
                                           + "x" * 30),
        "refresh token as access": tokens["refresh_token"],
        "garbage": "not.a.jwt",
    }
    for method, path in ADMIN_ENDPOINTS:
        body = {"json": {"queues": ["default"]}} if path.endswith("purge") else {"json": {}}
        call = getattr(server, method)
        missing = call(path, **body)
        assert missing.status_code == 401, (path, missing.text)
        assert set(missing.json()["error"]) == {"code", "message"}
        forbidden = call(path, headers=user, **body)
        assert forbidden.status_code == 403, (path, forbidden.text)
        for label, token in bad_tokens.items():
            response = call(path, headers={"Authorization": f"Bearer {token}"}, **body)
            assert response.status_code in (401, 422), (path, label, response.text)
            assert "error" in response.json()
    # A well-signed token whose role claim says admin for a plain user is still refused:
    # the role is checked against the users table.
    alice_id = server.get("/api/auth/me", headers=user).json()["id"]
    lying = _forged(alice_id, "admin")
    assert server.get("/api/celery/status",
                      headers={"Authorization": f"Bearer {lying}"}).status_code == 403

    # Failed logins are limited per client (8 per minute here): past the limit a wrong
    # password gets 429, the right one still gets in (after the throttle delay).
    codes = [server.post("/api/auth/login", json={"username": "alice", "password": "wrong-pw"})
             .status_code for _ in range(10)]
    assert codes[-1] == 429 and set(codes) <= {401, 429}
    limited = server.post("/api/auth/login", json={"username": "alice", "password": "wrong-pw"})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    right = server.post("/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert right.status_code == 200, right.text

    assert server.stop() == 0


def _users_cli(server, *args: str, password: str = "") -> None:
    """`flask users ...` on the server's instance: another process than the server's."""
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app:create_app", "users",
                             *args], input=password + "\n", capture_output=True, text=True,
                            cwd=ROOT, env=server.env, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _refused(response, code: str) -> bool:
    return response.status_code == 401 and response.json()["error"]["code"] == code


def test_old_tokens_are_refused_after_demotion_deletion_replay_and_password_change(start_server):
    server = start_server("run")
    server.wait_healthy(60)
    add_user(server, "bob", "bob-password-1", role="admin")
    add_user(server, "dave", "dave-password-1")
    dave = server.login("dave", "dave-password-1")
    bob = server.login("bob", "bob-password-1")
    assert server.get("/api/celery/status", headers=_bearer(bob["access_token"])).ok
    assert server.post("/api/jobs/calibration", json={},
                       headers=_bearer(dave["access_token"])).status_code == 202

    # demoted admin: refused on the next request, by the server process, not at expiry
    _users_cli(server, "set-role", "bob", "user")
    assert _refused(server.get("/api/celery/status", headers=_bearer(bob["access_token"])),
                    "token_stale")
    assert _refused(server.get("/api/jobs", headers=_bearer(bob["access_token"])), "token_stale")

    # reused refresh token: the replay and every token of that login are refused
    rotated = server.post("/api/auth/refresh", headers=_bearer(dave["refresh_token"])).json()
    assert _refused(server.post("/api/auth/refresh", headers=_bearer(dave["refresh_token"])),
                    "refresh_token_reused")
    assert _refused(server.post("/api/auth/refresh", headers=_bearer(rotated["refresh_token"])),
                    "token_revoked")

    # password change
    again = server.login("dave", "dave-password-1")
    _users_cli(server, "set-password", "dave", "--password-stdin", password="dave-password-2")
    assert _refused(server.get("/api/auth/me", headers=_bearer(again["access_token"])),
                    "token_stale")

    # deleted and re-created: neither the old tokens nor the old jobs come back
    latest = server.login("dave", "dave-password-2")
    _users_cli(server, "delete", "dave")
    add_user(server, "dave", "dave-password-3")
    assert _refused(server.get("/api/auth/me", headers=_bearer(latest["access_token"])),
                    "unknown_user")
    assert _refused(server.post("/api/auth/refresh", headers=_bearer(latest["refresh_token"])),
                    "unknown_user")
    new_dave = server.login("dave", "dave-password-3")
    assert server.get("/api/jobs", headers=_bearer(new_dave["access_token"])).json()["jobs"] == []
    assert server.stop() == 0


@pytest.mark.parametrize("secret", [None, "change-me", "dev-insecure-jwt-secret-change-me"])
def test_production_refuses_a_default_or_weak_secret(tmp_path, secret):
    env = base_env(tmp_path / "instance", 1, APP_ENV="production")
    env.pop("JWT_SECRET_KEY")
    if secret is not None:
        env["JWT_SECRET_KEY"] = secret
    result = subprocess.run([sys.executable, str(ROOT / "start_with_celery.py")], env=env,
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "JWT_SECRET_KEY" in result.stderr
