"""The admin API's HTTP layer in process: validation, error mapping, health body.

A fake manager stands behind the handle here; tests/e2e drives the real one.
"""
from __future__ import annotations

import pytest

from app.supervisor import manager_handle
from tests.web.fakes import FakeManager


@pytest.fixture
def fake(app):
    handle = manager_handle(app)
    assert handle.acquire(FakeManager)
    return handle.manager


ADMIN_ROUTES = [("get", "/api/celery/status"), ("post", "/api/celery/start"),
                ("post", "/api/celery/stop"), ("post", "/api/celery/restart"),
                ("get", "/api/celery/tasks"), ("get", "/api/celery/stats"),
                ("post", "/api/celery/purge")]


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_admin_routes_need_an_admin(client, user_headers, method, path):
    assert getattr(client, method)(path).status_code == 401
    response = getattr(client, method)(path, headers=user_headers, json={"queues": ["default"]})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("path,body", [
    ("/api/celery/start", {"concurrency": 0}),
    ("/api/celery/start", {"concurrency": 65}),
    ("/api/celery/start", {"concurrency": "3"}),
    ("/api/celery/start", {"concurrency": True}),
    ("/api/celery/start", {"queues": []}),
    ("/api/celery/start", {"queues": ["celery"]}),
    ("/api/celery/start", {"queues": "default"}),
    ("/api/celery/start", {"extra": 1}),
    ("/api/celery/stop", {"timeout": -1}),
    ("/api/celery/stop", {"timeout": 601}),
    ("/api/celery/stop", {"timeout": "10"}),
    ("/api/celery/stop", {"timeout": 1e308 * 10}),
    ("/api/celery/restart", {"queue": "nope"}),
    ("/api/celery/restart", {"queue": 3}),
    ("/api/celery/purge", {}),
    ("/api/celery/purge", {"queues": []}),
    ("/api/celery/purge", {"queues": ["default", "../etc"]}),
    ("/api/celery/purge", {"queues": [None]}),
    ("/api/celery/purge", [1, 2]),
    ("/api/celery/purge", "default"),
])
def test_bad_bodies_are_400(client, admin_headers, fake, path, body):
    response = client.post(path, headers=admin_headers, json=body)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert set(error) == {"code", "message"} and error["message"]
    assert not [c for c in fake.calls if c[0] != "status"]


def test_malformed_json_is_400(client, admin_headers, fake):
    response = client.post("/api/celery/start", headers=admin_headers, data="{nope",
                           content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_verbs_reach_the_manager(client, admin_headers, fake):
    assert client.post("/api/celery/start", headers=admin_headers,
                       json={"concurrency": 4, "queues": ["default", "default"]}).status_code == 200
    assert client.post("/api/celery/stop", headers=admin_headers,
                       json={"timeout": 2.5}).status_code == 200
    assert client.post("/api/celery/restart", headers=admin_headers,
                       json={"queue": "pdf_offset"}).status_code == 200
    assert client.post("/api/celery/restart", headers=admin_headers).status_code == 200
    purged = client.post("/api/celery/purge", headers=admin_headers,
                         json={"queues": ["pdf_offset", "pdf_offset"]})
    assert purged.get_json() == {"purged": {"pdf_offset": 0}, "jobs_failed": {"pdf_offset": 0}}
    assert fake.calls == [
        ("start", {"concurrency": 4, "queues": ["default", "default"]}),
        ("stop", {"timeout": 2.5}),
        ("restart", {"queue": "pdf_offset"}),
        ("restart", {"queue": None}),
        ("purge", {"queues": ["pdf_offset"]}),
    ]


def test_manager_errors_map_to_their_status(client, admin_headers, fake):
    response = client.post("/api/celery/start", headers=admin_headers,
                           json={"queues": ["default"]})
    assert response.status_code == 200
    fake.broker_down = True
    for path in ("/api/celery/tasks", "/api/celery/stats"):
        response = client.get(path, headers=admin_headers)
        assert response.status_code == 503, path
        assert response.get_json()["error"]["code"] == "broker_unavailable"


def test_no_manager_is_503_not_500(client, admin_headers):
    for method, path in ADMIN_ROUTES[1:]:
        body = {"queues": ["default"]} if path.endswith("purge") else {}
        response = getattr(client, method)(path, headers=admin_headers, json=body)
        assert response.status_code == 503, path
        assert response.get_json()["error"]["code"] == "manager_unavailable"
    assert client.get("/api/celery/status", headers=admin_headers).status_code == 200


def test_health_is_public_and_leaks_nothing(client, fake):
    response = client.get("/api/celery/health")
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"healthy", "status", "mode", "uptime_seconds", "restart_count",
                         "workers"}
    assert "pid" not in response.get_data(as_text=True)
    assert "/secret" not in response.get_data(as_text=True)


def test_unhealthy_is_503(client, fake, monkeypatch):
    monkeypatch.setattr(fake, "health", lambda: {"healthy": False, "status": "unhealthy",
                                                 "mode": "celery", "uptime_seconds": 1,
                                                 "restart_count": 9,
                                                 "workers": {"running": 0, "expected": 3}})
    assert client.get("/api/celery/health").status_code == 503


def test_probe_layer_and_flask_route_agree(app, client, fake):
    via_probe = client.get("/api/celery/health")
    head = client.head("/api/celery/health")
    assert head.status_code == 200 and head.data == b""
    with app.test_request_context("/api/celery/health"):
        from app.supervisor.api import health
        via_flask = health()
    assert via_probe.get_json() == via_flask.get_json()
    assert via_probe.headers["Cache-Control"] == via_flask.headers["Cache-Control"] == "no-store"
