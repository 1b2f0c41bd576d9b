"""The admin API against real Celery workers run by the real manager (start_with_celery.py)."""
from __future__ import annotations

import time

import psutil
import pytest
import redis

from app.celery_config import TASK_HEALTH, make_celery
from app.queue_names import KNOWN_QUEUES
from app.supervisor.admin_ops import ADMIN_OPS
from tests.conftest import make_settings

pytestmark = pytest.mark.slow


def _status(server, headers) -> dict:
    response = server.get("/api/celery/status", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _by_queue(status: dict) -> dict:
    return {worker["queue"]: worker for worker in status["workers"]}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {value!r}")


def _has_real_shape(name: str, response) -> None:
    """The real manager's answer has the keys the admin operations table lists (the web
    tests' fake is held to the same keys)."""
    assert response.status_code == 200, response.text
    missing = set(ADMIN_OPS[name].answer_keys) - set(response.json())
    assert not missing, (name, missing)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_admin_flows_against_real_workers(start_server, redis_server, tmp_path):
    server = start_server("start_with_celery", START_CELERY_WORKER="true",
                          REDIS_URL=redis_server.url)
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    admin = server.headers()

    # status: one responsive worker per queue, real processes
    status = _status(server, admin)
    _has_real_shape("health", server.get("/api/celery/health"))
    _has_real_shape("status", server.get("/api/celery/status", headers=admin))
    workers = _by_queue(status)
    assert set(workers) == set(KNOWN_QUEUES)
    assert status["mode"] == "celery" and status["broker"]["reachable"] is True
    for worker in workers.values():
        assert worker["state"] == "RUNNING" and _alive(worker["pid"])
    _wait(lambda: all(w["responsive"] for w in _status(server, admin)["workers"]), 30,
          "every worker to answer pings")
    first_pids = {queue: w["pid"] for queue, w in workers.items()}

    tasks = server.get("/api/celery/tasks", headers=admin)
    _has_real_shape("tasks", tasks)
    assert tasks.status_code == 200 and set(tasks.json()["workers"]) == \
        {w["name"] for w in workers.values()}
    stats = server.get("/api/celery/stats", headers=admin)
    assert stats.status_code == 200 and stats.json()["workers"]
    _has_real_shape("stats", stats)

    # restart one queue: only that worker gets a new process
    restarted = server.post("/api/celery/restart", headers=admin, json={"queue": "pdf_offset"})
    _has_real_shape("restart", restarted)
    after = _wait(lambda: (lambda w: w if w["pdf_offset"]["pid"] != first_pids["pdf_offset"]
                           and w["pdf_offset"]["state"] == "RUNNING" else None)(
        _by_queue(_status(server, admin))), 60, "a new pdf_offset worker")
    assert after["pdf_generation"]["pid"] == first_pids["pdf_generation"]
    assert after["default"]["pid"] == first_pids["default"]
    assert after["pdf_offset"]["restarts_by_reason"]["manual"] >= 1
    assert not _alive(first_pids["pdf_offset"])

    # stop: every worker process ends
    stopped = server.post("/api/celery/stop", headers=admin, json={"timeout": 10})
    _has_real_shape("stop", stopped)
    status = _wait(lambda: (lambda s: s if all(w["state"] == "STOPPED" for w in s["workers"])
                            else None)(_status(server, admin)), 30, "all workers STOPPED")
    for worker in after.values():
        assert not _alive(worker["pid"])
    health = server.get("/api/celery/health")
    assert health.status_code == 200 and health.json()["workers"]["running"] == 0

    # purge one queue: messages of the other queues stay
    client = make_celery(make_settings(tmp_path, REDIS_URL=redis_server.url), role="client")
    for _ in range(3):
        client.send_task(TASK_HEALTH, queue="pdf_generation", routing_key="pdf_generation")
    for _ in range(2):
        client.send_task(TASK_HEALTH, queue="default", routing_key="default")
    raw = redis.Redis.from_url(redis_server.url)
    assert raw.llen("pdf_generation") == 3 and raw.llen("default") == 2
    depths = _status(server, admin)["queues"]
    assert depths["pdf_generation"] == 3 and depths["default"] == 2
    purged = server.post("/api/celery/purge", headers=admin, json={"queues": ["default"]})
    _has_real_shape("purge", purged)
    assert purged.json()["purged"] == {"default": 2}
    assert raw.llen("default") == 0 and raw.llen("pdf_generation") == 3

    # start: workers come back and drain the queue that was kept
    started = server.post("/api/celery/start", headers=admin, json={})
    _has_real_shape("start", started)
    server.wait_workers(3, timeout=90)
    _wait(lambda: raw.llen("pdf_generation") == 0, 60, "pdf_generation to be consumed")
    final = _by_queue(_status(server, admin))
    assert all(w["state"] == "RUNNING" for w in final.values())
    assert not set(w["pid"] for w in final.values()) & set(first_pids.values())
    raw.close()
    client.close()

    assert server.stop() == 0
