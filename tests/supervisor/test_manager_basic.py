"""The manager's surface with real workers: start, status, health, tasks, stats, stop, purge."""
from __future__ import annotations

import json
import socket
import time

import psutil
import pytest

from app.supervisor.errors import InvalidRequest
from app.supervisor.pidfile import StateFile
from tests.conftest import make_settings, wait_for
from tests.supervisor.conftest import all_running, worker

pytestmark = pytest.mark.timeout(120)
HOST = socket.gethostname()


def test_each_queue_gets_its_own_responsive_worker(fast_settings, managers, client_app):
    settings = fast_settings(CELERY_CONCURRENCY=4,
                             CELERY_QUEUES="pdf_generation,pdf_generation,pdf_offset,default")
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 3), 30, 0.1, "three responsive workers")
    status = manager.status()
    json.dumps(status)  # the API serialises it as is
    sizes = {w["queue"]: w["pool_size"] for w in status["workers"]}
    assert sizes == {"pdf_generation": 2, "pdf_offset": 1, "default": 1}
    pids = {w["pid"] for w in status["workers"]}
    assert len(pids) == 3
    for w in status["workers"]:
        assert w["name"] == f"{w['queue']}@{HOST}"
        assert w["log_file"].endswith(f"worker-{w['queue']}.log")
        assert psutil.Process(w["pid"]).cmdline()[1:4] == ["-m", "celery", "-A"]
        assert w["last_error"] is None and w["restarts"] == 0
    assert status["mode"] == "celery"
    assert status["broker"]["reachable"] and not status["broker"]["embedded"]
    assert status["queues"] == {"pdf_generation": 0, "pdf_offset": 0, "default": 0}
    assert manager.health() == {**manager.health(), "healthy": True, "status": "healthy",
                                "mode": "celery", "workers": {"running": 3, "expected": 3}}

    # Each queue's tasks run on that queue's worker.
    client = client_app(settings)
    for queue in ("pdf_generation", "pdf_offset", "default"):
        result = client.send_task("sup.whoami", queue=queue)
        assert result.get(timeout=10) == f"{queue}@{HOST}"
        assert manager.worker_available(queue)

    # The state file knows every child, for the next boot.
    recorded = {entry["pid"] for entry in StateFile(settings.run_dir / "children.json").load()}
    assert recorded == pids

    tasks = manager.tasks()["workers"]
    assert set(tasks) == {w["name"] for w in status["workers"]}
    assert all(t["responded"] and t["active"] == [] for t in tasks.values())
    stats = manager.stats()["workers"]
    assert stats[f"pdf_generation@{HOST}"]["pool"]["max-concurrency"] == 2

    # A worker's memory and CPU are measured over its whole tree.
    measured = wait_for(lambda: all(w["memory_bytes"] for w in manager.status()["workers"])
                        and manager.status(), 10, 0.2, "stats")
    assert all(w["rss_bytes"] > 0 and w["cpu_percent"] is not None for w in measured["workers"])


def test_stop_purge_start_and_restart(fast_settings, managers, client_app):
    settings = fast_settings(CELERY_QUEUES="default")
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker running")
    first_pid = worker(manager.status(), "default")["pid"]

    status = manager.stop(timeout=10)
    w = worker(status, "default")
    assert (w["state"], w["pid"], w["last_exit"]["code"]) == ("STOPPED", None, 0)
    assert not psutil.pid_exists(first_pid) or \
        psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
    assert manager.health()["status"] == "degraded"
    assert manager.health()["mode"] == "threads"
    assert not manager.worker_available("default")

    client = client_app(settings)
    for n in range(3):
        client.send_task("sup.noop", args=[n], queue="default")
    assert wait_for(lambda: manager.status()["queues"]["default"] == 3, 5, message="depth 3")
    assert manager.purge(["default"]) == {"purged": {"default": 3}}
    assert manager.status()["queues"]["default"] == 0
    with pytest.raises(InvalidRequest):
        manager.purge(["nope"])

    manager.start()
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker running again")
    second_pid = worker(manager.status(), "default")["pid"]
    assert second_pid != first_pid

    status = manager.restart("default")
    w = worker(status, "default")
    assert w["pid"] not in (None, second_pid)
    assert w["restarts_by_reason"]["manual"] == 1
    with pytest.raises(InvalidRequest):
        manager.restart("pdf_offset")   # no worker for it in this configuration
    with pytest.raises(InvalidRequest):
        manager.start(concurrency=0)
    with pytest.raises(InvalidRequest):
        manager.start(queues=["bogus"])


def test_start_with_other_queues_and_concurrency(fast_settings, managers):
    settings = fast_settings(CELERY_QUEUES="default,pdf_offset")
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 2), 30, 0.1, "two workers")
    manager.start(concurrency=3, queues=["default"])
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "only default left")
    status = manager.status()
    assert [(w["queue"], w["pool_size"]) for w in status["workers"]] == [("default", 3)]
    assert manager.health()["workers"] == {"running": 1, "expected": 1}


def test_on_tick_is_called_by_the_manager_loop(tmp_path, managers):
    ticks = []
    settings = make_settings(tmp_path, EMBEDDED_REDIS=False, START_CELERY_WORKER=False)
    manager = managers(settings, on_tick=lambda: ticks.append(time.monotonic()))
    time.sleep(2.5)
    assert len(ticks) >= 2                  # an idle loop still wakes about once a second
    manager.close(timeout=1)
    count = len(ticks)
    time.sleep(1.2)
    assert len(ticks) == count              # a stopped loop stops calling it
