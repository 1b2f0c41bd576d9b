"""The admin operations are listed once (app.supervisor.admin_ops); the socket's
allow-list, the proxy's methods, the routes, the OpenAPI entries and the fake follow."""
from __future__ import annotations

import inspect
import json

import pytest

from app.supervisor.admin_ops import ADMIN_OPS
from app.supervisor.control import ManagerHandle
from app.supervisor.control_socket import ControlSocketServer
from app.supervisor.manager import CeleryWorkerManager
from tests.web.fakes import FakeManager

SAMPLE_ARGS = {"start": {"queues": ["default"]}, "purge": {"queues": ["default"]},
               "restart": {"queue": "default"}, "worker_available": {"queue": "default"},
               "log_tail": {"worker": "default@host"}}


@pytest.mark.parametrize("op", ADMIN_OPS.values(), ids=lambda op: op.name)
def test_the_manager_the_proxy_and_the_fake_take_the_same_arguments(op):
    expected = list(op.signature().parameters)
    for cls in (CeleryWorkerManager, ManagerHandle, FakeManager):
        params = list(inspect.signature(getattr(cls, op.name)).parameters)[1:]
        assert params == expected, (cls.__name__, op.name)


@pytest.mark.parametrize("op", ADMIN_OPS.values(), ids=lambda op: op.name)
def test_the_fake_answers_with_the_real_keys(op):
    answer = getattr(FakeManager(), op.name)(**SAMPLE_ARGS.get(op.name, {}))
    if op.answer_keys:
        assert set(op.answer_keys) <= set(answer), op.name


def test_the_proxy_forwards_positional_and_keyword_calls(monkeypatch, tmp_path):
    from tests.conftest import make_settings
    handle = ManagerHandle(make_settings(tmp_path))
    sent = []
    monkeypatch.setattr(handle, "_call", lambda op, **kwargs: sent.append((op, kwargs)))
    handle.start(2)
    handle.stop()
    handle.purge(["default"])
    assert sent == [("start", {"concurrency": 2, "queues": None}), ("stop", {"timeout": 30}),
                    ("purge", {"queues": ["default"]})]


def test_the_socket_serves_the_listed_operations_only():
    calls = []
    server = ControlSocketServer.__new__(ControlSocketServer)  # dispatch needs no socket
    server.call = lambda op, **kwargs: calls.append(op) or "ok"
    refused = server.dispatch(json.dumps({"op": "close", "kwargs": {}}).encode())
    assert refused["ok"] is False and "unknown operation" in refused["error"]["message"]
    for name in ADMIN_OPS:
        assert server.dispatch(json.dumps({"op": name}).encode()) == {"ok": True,
                                                                       "result": "ok"}
    assert calls == list(ADMIN_OPS)


def test_routes_and_openapi_entries_are_the_http_operations(app, client):
    routes = {(rule.rule, method) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/celery/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    expected = {(f"/api/celery/{op.name}", op.http) for op in ADMIN_OPS.values() if op.http}
    assert routes == expected
    paths = client.get("/api/openapi.json").get_json()["paths"]
    documented = {(path, method.upper()) for path, entry in paths.items()
                  if path.startswith("/api/celery/") for method in entry}
    assert documented == expected
    purge = paths["/api/celery/purge"]["post"]
    assert purge["requestBody"]["required"] is True and "400" in purge["responses"]
