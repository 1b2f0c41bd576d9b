"""The host registry and host commands (app.cluster) on SQLite and PostgreSQL."""
from __future__ import annotations

import threading

import pytest

from app.cluster import CommandBoard, HostCommandError, HostRegistry
from app.db import engine_for
from tests.conftest import make_settings, wait_for


@pytest.fixture
def engine(tmp_path, db_backend):
    return engine_for(make_settings(tmp_path).database_url)


def _publish(registry: HostRegistry, node: str, interval: float, **snapshot) -> None:
    registry.publish(node, role="worker", pid=123, interval=interval, started_at=1.0,
                     snapshot={"mode": "celery", "workers": [], **snapshot})


def test_a_host_that_stops_beating_is_lost_after_three_intervals(engine):
    registry = HostRegistry(engine)
    _publish(registry, "steady", 60)
    _publish(registry, "quiet", 0.2, workers=[{"name": "default@quiet", "state": "RUNNING"}])
    hosts = {h["node"]: h for h in registry.hosts()}
    assert hosts["quiet"]["alive"] and hosts["quiet"]["state"] == "alive"
    assert hosts["quiet"]["workers"][0]["name"] == "default@quiet"
    assert hosts["quiet"]["role"] == "worker"
    wait_for(lambda: not {h["node"]: h for h in registry.hosts()}["quiet"]["alive"], 5, 0.05,
             "quiet is lost")
    hosts = {h["node"]: h for h in registry.hosts()}
    assert hosts["quiet"]["state"] == "lost" and hosts["quiet"]["seen_seconds_ago"] >= 0.6
    assert hosts["steady"]["alive"]
    registry.remove("quiet")
    assert [h["node"] for h in registry.hosts()] == ["steady"]


def test_a_command_runs_on_the_named_host_once_and_answers(engine):
    board = CommandBoard(engine)
    seen = []

    def host_b():
        def poll():
            return board.take("b") or None
        for command in wait_for(poll, 10, 0.05, "a command for b"):
            seen.append((command.op, command.args))
            board.finish(command.id, result={"ok": True, "queue": command.args["queue"]})

    thread = threading.Thread(target=host_b)
    thread.start()
    assert board.send("b", "restart", {"queue": "default"}, timeout=10) == {
        "ok": True, "queue": "default"}
    thread.join(10)
    assert seen == [("restart", {"queue": "default"})]
    assert board.take("b") == [] and board.take("a") == []


def test_a_host_error_comes_back_with_its_status(engine):
    board = CommandBoard(engine)

    def host_b():
        command = wait_for(lambda: board.take("b") or None, 10, 0.05, "command")[0]
        board.finish(command.id, error=HostCommandError(400, "invalid_request", "no queue x"))

    thread = threading.Thread(target=host_b)
    thread.start()
    with pytest.raises(HostCommandError) as caught:
        board.send("b", "restart", {"queue": "x"}, timeout=10)
    thread.join(10)
    assert (caught.value.http_status, caught.value.code) == (400, "invalid_request")


def test_an_unanswered_command_times_out_and_never_runs_later(engine):
    board = CommandBoard(engine)
    with pytest.raises(HostCommandError) as caught:
        board.send("b", "stop", {"timeout": 1}, timeout=0.3)
    assert caught.value.http_status == 504
    assert board.take("b") == []   # abandoned: a host that comes back does not stop later
