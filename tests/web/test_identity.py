"""Identity (issue 12): tokens name an immutable user id and a token version; role and
existence come from the users table on every request; refresh tokens rotate, and a
replayed one revokes its family. Each finding of the issue has a test named after it.
Runs on SQLite and PostgreSQL (tests.web.conftest)."""
from __future__ import annotations

import threading

import jwt
import pytest
import sqlalchemy as sa
from flask_jwt_extended import create_access_token

from app.db.schema import refresh_tokens
from app.jobs import services
from tests.web.conftest import ADMIN, USER, bearer, login

DAVE = ("dave", "dave-password-1")


def _users(app):
    return app.extensions["scm.users"]


def _refresh(client, refresh_token: str):
    return client.post("/api/auth/refresh", headers=bearer(refresh_token))


def _claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def _error_code(response) -> str:
    return response.get_json()["error"]["code"]


def _job_of(app, user_id: str) -> str:
    return services(app).store.create(owner=user_id, kind="calibration",
                                      params={"paper_size": "letter"}, queue="default").id


def _listed(client, access: str) -> list[str]:
    response = client.get("/api/jobs", headers=bearer(access))
    assert response.status_code == 200, response.get_json()
    return [job["id"] for job in response.get_json()["jobs"]]


def test_tokens_carry_the_user_id_not_the_name(app, client):
    tokens = login(client, *USER)
    me = client.get("/api/auth/me", headers=bearer(tokens["access_token"])).get_json()
    user = _users(app).get(USER[0])
    for token in (tokens["access_token"], tokens["refresh_token"]):
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == user.id == me["id"] != USER[0]
        assert claims["ver"] == user.token_version


def test_demoted_admin_token_refused(make_app):
    app = make_app()
    client = app.test_client()
    users = _users(app)
    users.create(*USER)
    users.create("bob", "bob-password-1", "admin")
    alices_job = _job_of(app, users.get(USER[0]).id)
    admin_access = login(client, "bob", "bob-password-1")["access_token"]
    assert alices_job in _listed(client, admin_access)  # an admin reads everyone's jobs
    shown = client.get(f"/api/jobs/{alices_job}", headers=bearer(admin_access)).get_json()
    assert shown["owner_name"] == USER[0]  # jobs name the id; the dashboard shows the name

    users.set_role("bob", "user")
    for path in ("/api/jobs", f"/api/jobs/{alices_job}", "/api/celery/status"):
        refused = client.get(path, headers=bearer(admin_access))
        assert refused.status_code == 401, (path, refused.get_json())
        assert _error_code(refused) == "token_stale"
    # Signed in again, bob is a plain user: none of alice's jobs, no admin API.
    plain = login(client, "bob", "bob-password-1")["access_token"]
    assert _listed(client, plain) == []
    assert client.get(f"/api/jobs/{alices_job}", headers=bearer(plain)).status_code == 404
    assert client.get("/api/celery/status", headers=bearer(plain)).status_code == 403


def test_jobs_api_ignores_the_role_claim(app, client):
    # The finding: the jobs API trusted `role` in the token. A token that is valid in
    # every other way (right id, right version) but claims admin reads only its own jobs.
    admin_job = _job_of(app, _users(app).get(ADMIN[0]).id)
    alice = _users(app).get(USER[0])
    with app.app_context():
        lying = create_access_token(identity=alice.id, additional_claims={
            "role": "admin", "ver": alice.token_version})
    assert _listed(client, lying) == []
    assert client.get(f"/api/jobs/{admin_job}", headers=bearer(lying)).status_code == 404
    assert client.get("/api/celery/status", headers=bearer(lying)).status_code == 403


def test_role_change_bumps_the_token_version(app, client):
    tokens = login(client, *USER)
    before = _users(app).get(USER[0]).token_version
    _users(app).set_role(USER[0], "admin")  # a promotion revokes too: the role is in tokens
    assert _users(app).get(USER[0]).token_version == before + 1
    for response in (client.get("/api/auth/me", headers=bearer(tokens["access_token"])),
                     _refresh(client, tokens["refresh_token"])):
        assert response.status_code == 401 and _error_code(response) == "token_stale"
    me = client.get("/api/auth/me", headers=bearer(login(client, *USER)["access_token"]))
    assert me.get_json()["role"] == "admin"


def test_password_change_revokes_old_tokens(app, client):
    tokens = login(client, *USER)
    _users(app).set_password(USER[0], "a-brand-new-password")
    for response in (client.get("/api/auth/me", headers=bearer(tokens["access_token"])),
                     _refresh(client, tokens["refresh_token"])):
        assert response.status_code == 401
        assert _error_code(response) == "token_stale"
        assert "sign in again" in response.get_json()["error"]["message"]
    fresh = login(client, USER[0], "a-brand-new-password")
    assert client.get("/api/auth/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_delete_revokes_tokens_and_forgets_refresh_tokens(app, client):
    tokens = login(client, *USER)
    user_id = _users(app).get(USER[0]).id
    refresh_store = app.extensions["scm.refresh_tokens"]
    family = _claims(tokens["refresh_token"])["fam"]
    assert refresh_store.family(family)
    assert _users(app).delete(USER[0])
    for response in (client.get("/api/auth/me", headers=bearer(tokens["access_token"])),
                     _refresh(client, tokens["refresh_token"])):
        assert response.status_code == 401 and _error_code(response) == "unknown_user"
    assert refresh_store.family(family) == []
    assert _users(app).get_by_id(user_id) is None


def test_deleted_and_recreated_user_inherits_no_tokens_or_jobs(app, client):
    users = _users(app)
    old = users.create(*DAVE)
    old_tokens = login(client, *DAVE)
    old_job = _job_of(app, old.id)
    saved = client.put("/api/profile", headers=bearer(old_tokens["access_token"]),
                       json={"x": 12, "y": -3})
    assert saved.status_code == 200, saved.get_json()

    users.delete(DAVE[0])
    new = users.create(DAVE[0], "another-dave-password")
    assert new.id != old.id and new.username == old.username
    for response in (client.get("/api/auth/me", headers=bearer(old_tokens["access_token"])),
                     _refresh(client, old_tokens["refresh_token"])):
        assert response.status_code == 401 and _error_code(response) == "unknown_user"

    access = login(client, DAVE[0], "another-dave-password")["access_token"]
    assert _listed(client, access) == []
    assert client.get(f"/api/jobs/{old_job}", headers=bearer(access)).status_code == 404
    assert client.get("/api/profile", headers=bearer(access)).status_code == 404
    # The old dave's job is still there for admins, under the old (dead) id.
    admin = login(client, *ADMIN)["access_token"]
    shown = client.get(f"/api/jobs/{old_job}", headers=bearer(admin)).get_json()
    assert shown["owner"] == old.id and shown["owner_name"] is None


def test_refresh_rotates_the_refresh_token(app, client):
    first = login(client, *USER)
    second = _refresh(client, first["refresh_token"])
    assert second.status_code == 200
    body = second.get_json()
    assert set(body) >= {"access_token", "refresh_token"}
    assert body["refresh_token"] != first["refresh_token"]
    assert client.get("/api/auth/me", headers=bearer(body["access_token"])).status_code == 200
    third = _refresh(client, body["refresh_token"])
    assert third.status_code == 200  # the new one works, once


def test_reused_refresh_token_revokes_family(app, client):
    stolen = login(client, *USER)["refresh_token"]
    other_login = login(client, *USER)["refresh_token"]  # another device: its own family
    victims = _refresh(client, stolen).get_json()["refresh_token"]

    replay = _refresh(client, stolen)
    assert replay.status_code == 401 and _error_code(replay) == "refresh_token_reused"
    # Every token descended from that login is dead now, the legitimate newest included.
    after = _refresh(client, victims)
    assert after.status_code == 401 and _error_code(after) == "token_revoked"
    family = app.extensions["scm.refresh_tokens"].family(_claims(victims)["fam"])
    assert len(family) == 2 and all(row["revoked_at"] for row in family)
    # The other login's family is untouched.
    assert _refresh(client, other_login).status_code == 200


def test_an_old_refresh_token_replayed_after_its_row_is_gone_still_revokes(app, client):
    # A family keeps only its last two rows; older used tokens are deleted, and a replay
    # of one is still recognised by its (signed) family.
    first = login(client, *USER)["refresh_token"]
    current = first
    for _ in range(5):
        current = _refresh(client, current).get_json()["refresh_token"]
    store = app.extensions["scm.refresh_tokens"]
    assert len(store.family(_claims(current)["fam"])) == 2  # bounded however often refreshed
    replay = _refresh(client, first)
    assert replay.status_code == 401 and _error_code(replay) == "refresh_token_reused"
    assert _error_code(_refresh(client, current)) == "token_revoked"


def test_sign_ins_per_user_are_bounded(app, client):
    store = app.extensions["scm.refresh_tokens"]
    store.max_sessions = 3
    oldest = login(client, *USER)["refresh_token"]
    newer = [login(client, *USER)["refresh_token"] for _ in range(3)]
    user_id = _users(app).get(USER[0]).id
    with store.engine.connect() as conn:
        count = sa.select(sa.func.count()).where(refresh_tokens.c.user_id == user_id)
        assert conn.execute(count).scalar() == 3
    assert _error_code(_refresh(client, oldest)) == "token_revoked"
    assert all(_refresh(client, token).status_code == 200 for token in newer)


def test_one_refresh_token_refreshed_concurrently_wins_once(app):
    refresh = login(app.test_client(), *USER)["refresh_token"]
    codes: list[int] = []
    start = threading.Barrier(4)

    def attempt():
        start.wait()
        codes.append(_refresh(app.test_client(), refresh).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200, 401, 401, 401]


def test_a_token_without_a_version_is_refused(app, client):
    # Tokens of the code before ids (sub = name, no version) and tokens without `ver`.
    alice = _users(app).get(USER[0])
    with app.app_context():
        by_name = create_access_token(identity=USER[0], additional_claims={"role": "user"})
        unversioned = create_access_token(identity=alice.id, additional_claims={"role": "user"})
    assert _error_code(client.get("/api/auth/me", headers=bearer(by_name))) == "unknown_user"
    assert _error_code(client.get("/api/auth/me", headers=bearer(unversioned))) == "token_stale"


@pytest.mark.parametrize("command", [["revoke-tokens"], ["set-password", "--password-stdin"]])
def test_users_cli_revokes_tokens(app, client, command):
    access = login(client, *USER)["access_token"]
    args = ["users", command[0], USER[0], *command[1:]]
    result = app.test_cli_runner().invoke(args=args, input="yet-another-password\n")
    assert result.exit_code == 0, result.output
    refused = client.get("/api/auth/me", headers=bearer(access))
    assert refused.status_code == 401 and _error_code(refused) == "token_stale"


def test_users_cli_lists_ids(app):
    result = app.test_cli_runner().invoke(args=["users", "list"])
    alice = _users(app).get(USER[0])
    assert f"{USER[0]}\tuser\t{alice.id}" in result.output.splitlines()


def test_a_token_recorded_after_its_family_was_revoked_is_refused(app):
    # The race of a refresh with a replay of the same token: the replay revokes the family
    # before the winner has recorded its new token. That token must not revive the family.
    from app.auth.refresh_tokens import Use

    store = app.extensions["scm.refresh_tokens"]
    user_id = _users(app).get(USER[0]).id
    store.record(jti="t1", family="f", user_id=user_id, expires_at=2e9)
    assert store.use("t1", "f") is Use.OK        # the winner
    assert store.use("t1", "f") is Use.REUSED    # the replay, before the winner records t2
    store.record(jti="t2", family="f", user_id=user_id, expires_at=2e9)
    assert store.use("t2", "f") is Use.REVOKED
    assert store.use("never-issued", "unknown-family") is Use.REVOKED
