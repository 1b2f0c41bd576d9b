"""The cluster agent (app.runtime.cluster_agent): heartbeats, lost hosts handed to the
reconciler's holder once, commands from other hosts run on this host's manager."""
from __future__ import annotations

import pytest

from app.cluster import CommandBoard, HostCommandError, HostRegistry
from app.db import engine_for
from app.runtime.cluster_agent import ClusterAgent
from app.supervisor.errors import InvalidRequest
from tests.conftest import make_settings, wait_for


@pytest.fixture
def engine(tmp_path, db_backend):
    return engine_for(make_settings(tmp_path).database_url)


def _agent(tmp_path, engine, node, on_host_lost=None, run_op=None):
    settings = make_settings(tmp_path / node, NODE_NAME=node, CELERY_HEALTH_CHECK_INTERVAL=0.2)
    status = {"mode": "celery", "workers": [{"name": f"default@{node}", "queue": "default",
                                             "state": "RUNNING", "pid": 7, "restarts": 0}]}
    return ClusterAgent(settings, HostRegistry(engine), CommandBoard(engine), role="worker",
                        status=lambda: status, run_op=run_op or (lambda op, **kw: status),
                        on_host_lost=on_host_lost)


def test_a_lost_host_is_handed_over_until_the_lease_holder_took_it(tmp_path, engine):
    answers = [None, None, ["job-1"]]   # not the holder twice, then the holder
    calls = []

    def on_host_lost(node):
        calls.append(node)
        return answers.pop(0) if answers else ["again?"]

    here = _agent(tmp_path, engine, "here", on_host_lost)
    gone = _agent(tmp_path, engine, "gone")
    gone.beat()                        # then it never beats again
    here.beat()
    wait_for(lambda: any(h["node"] == "gone" and not h["alive"]
                         for h in HostRegistry(engine).hosts()), 5, 0.05, "gone is lost")
    assert here.bring_back_lost_hosts() == []
    assert here.bring_back_lost_hosts() == []
    assert here.bring_back_lost_hosts() == ["gone"]
    assert here.bring_back_lost_hosts() == []       # once per loss
    assert calls == ["gone", "gone", "gone"]
    here.beat()
    host = {h["node"]: h for h in HostRegistry(engine).hosts()}["here"]
    assert host["alive"] and host["workers"][0]["name"] == "default@here"
    assert host["workers"][0]["last_seen"] > 0


def test_commands_run_on_the_named_host_and_errors_keep_their_status(tmp_path, engine):
    def run_op(op, **kwargs):
        if kwargs.get("queue") == "nope":
            raise InvalidRequest("no worker for queue 'nope'")
        return {"op": op, **kwargs}

    agent = _agent(tmp_path, engine, "b", run_op=run_op)
    agent.start()
    try:
        board = CommandBoard(engine)
        assert board.send("b", "restart", {"queue": "default"}, 10) == {
            "op": "restart", "queue": "default"}
        with pytest.raises(HostCommandError) as caught:
            board.send("b", "restart", {"queue": "nope"}, 10)
        assert (caught.value.http_status, caught.value.code) == (400, "invalid_request")
        with pytest.raises(HostCommandError) as caught:
            board.send("b", "purge", {}, 10)        # not a host command
        assert caught.value.http_status == 400
    finally:
        agent.stop()
    assert "b" not in {h["node"] for h in HostRegistry(engine).hosts()}  # left on stop
