"""Boot and shutdown: embedded Redis, no Redis binary, host killed, stale children, warm stops."""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import psutil
import pytest

from app.supervisor.errors import BrokerUnavailable
from app.supervisor.pidfile import StateFile
from app.supervisor.plan import PROJECT_ROOT
from tests.conftest import make_settings, wait_for
from tests.supervisor.conftest import TEST_APP, all_running, worker
from tests.supervisor.marks import marks_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
HOST = socket.gethostname()


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_embedded_redis_when_no_redis_is_configured(tmp_path, managers, client_app):
    settings = make_settings(tmp_path, EMBEDDED_REDIS=True, START_CELERY_WORKER=True,
                             CELERY_QUEUES="default", CELERY_HEALTH_CHECK_INTERVAL=1.0)
    assert settings.wants_embedded_redis
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker on the embedded Redis")
    status = manager.status()
    broker = status["broker"]
    assert broker["embedded"] and broker["url"].startswith("redis+socket://")
    assert broker["reachable"] and broker["process"]["state"] == "RUNNING"
    redis_pid = broker["process"]["pid"]
    sock = settings.embedded_redis_socket
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o700
    listening = [c for c in psutil.Process(redis_pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening == []                               # no TCP port at all
    assert (settings.INSTANCE_PATH / "redis").is_dir()

    client = client_app(settings)
    assert client.send_task("sup.whoami", queue="default").get(timeout=10) == f"default@{HOST}"

    # It is supervised like a worker: killed, it comes back, and work flows again.
    os.kill(redis_pid, signal.SIGKILL)
    wait_for(lambda: (p := manager.status()["broker"]["process"])["pid"] not in (None, redis_pid)
             and p["state"] == "RUNNING", 10, 0.05, "embedded Redis restarted")
    assert client.send_task("sup.whoami", queue="default").get(timeout=20) == f"default@{HOST}"
    appendonly = list((settings.INSTANCE_PATH / "redis").rglob("appendonly*"))
    assert appendonly, "the append-only file keeps queued jobs across restarts"

    new_redis = manager.status()["broker"]["process"]["pid"]
    manager.close(timeout=5)
    assert gone(new_redis)


def test_no_redis_binary_means_thread_mode_with_one_clear_log_line(tmp_path, managers, caplog):
    caplog.set_level(logging.WARNING, logger="app.supervisor.manager")
    settings = make_settings(tmp_path, EMBEDDED_REDIS=True, START_CELERY_WORKER=True,
                             REDIS_SERVER_BINARY=str(tmp_path / "no-such-redis-server"))
    manager = managers(settings)
    health = manager.health()
    assert health["mode"] == "threads" and health["status"] == "degraded"
    assert health["workers"] == {"running": 0, "expected": 0}
    lines = [r.getMessage() for r in caplog.records if "threads" in r.getMessage()]
    assert len(lines) == 1
    assert "REDIS_SERVER_BINARY" in lines[0] and "no-such-redis-server" in lines[0]
    status = manager.status()
    assert "REDIS_SERVER_BINARY" in status["manager"]["threads_reason"]
    assert all(w["pid"] is None and w["state"] == "STOPPED" for w in status["workers"])
    assert not manager.worker_available("default")
    with pytest.raises(BrokerUnavailable):
        manager.start()
    with pytest.raises(BrokerUnavailable):
        manager.tasks()
    assert psutil.Process().children() == []


def test_host_killed_takes_its_workers_along_and_next_boot_finds_none(tmp_path, no_leftovers):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "CELERY_")) and k != "INSTANCE_PATH"}
    env.update(INSTANCE_PATH=str(tmp_path / "instance"), EMBEDDED_REDIS="true",
               START_CELERY_WORKER="true", CELERY_QUEUES="default,pdf_offset",
               CELERY_CONCURRENCY="2", APP_ENV="testing")
    host = subprocess.Popen([sys.executable, "-m", "tests.supervisor.host_manager", TEST_APP],
                            cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True, text=True)
    try:
        line = host.stdout.readline()
        assert line, "the host manager did not report ready"
        report = json.loads(line)
        children = report["children"]
        assert len(report["workers"]) == 2
        assert len(children) >= 5   # redis + 2 workers with their pool processes
        settings = make_settings(tmp_path, EMBEDDED_REDIS=True)
        import redis
        redis.Redis(unix_socket_path=str(settings.embedded_redis_socket)).set("survives", "1")
        time.sleep(1.2)   # appendfsync everysec

        os.kill(host.pid, signal.SIGKILL)
        host.wait(5)
        killed_at = time.monotonic()
        wait_for(lambda: all(gone(pid) for pid in children), 5, 0.05,
                 "every child of the killed host to die")
        assert time.monotonic() - killed_at < 5
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()

    # Next boot: the state file still lists them, but none is alive any more.
    state = StateFile(tmp_path / "instance" / "run" / "children.json")
    assert len(state.load()) == len(report["workers"]) + 1
    from app.supervisor.manager import CeleryWorkerManager
    manager = CeleryWorkerManager(settings, worker_app=TEST_APP)
    try:
        manager.open()
        assert manager.status()["broker"]["process"]["state"] == "RUNNING"
        assert redis.Redis(unix_socket_path=str(settings.embedded_redis_socket)).get(
            "survives") == b"1"
        assert [e["name"] for e in state.load()] == ["redis"]
    finally:
        manager.close(timeout=3)


def test_boot_stops_stale_children_of_a_previous_run(tmp_path, managers):
    settings = make_settings(tmp_path)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              start_new_session=True)
    try:
        proc = psutil.Process(orphan.pid)
        StateFile(settings.run_dir / "children.json").save([
            {"name": "default@old", "pid": orphan.pid, "create_time": proc.create_time(),
             "cmdline": orphan.args, "shim_cmdline": []}])
        managers(settings)
        assert orphan.wait(5) is not None
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_warm_stop_lets_the_running_task_finish(fast_settings, managers, client_app,
                                                tmp_path):
    settings = fast_settings(CELERY_QUEUES="default", CELERY_CONCURRENCY=1)
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker running")
    client = client_app(settings)
    marks = tmp_path / "marks.txt"
    result = client.send_task("sup.sleep", args=[2.0, str(marks)], queue="default")
    wait_for(lambda: marks_of(marks) == ["start"], 10, 0.02, "task started")
    started = time.monotonic()
    status = manager.stop(timeout=15)
    assert time.monotonic() - started < 15
    assert marks_of(marks) == ["start", "done"]
    assert result.get(timeout=5)["node"] == f"default@{HOST}"
    assert worker(status, "default")["last_exit"]["code"] == 0


def test_short_stop_timeout_requeues_the_task_and_it_completes_after_restart(
        fast_settings, managers, client_app, tmp_path):
    settings = fast_settings(CELERY_QUEUES="default", CELERY_CONCURRENCY=1)
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker running")
    client = client_app(settings)
    marks = tmp_path / "marks.txt"
    result = client.send_task("sup.sleep", args=[4.0, str(marks)], queue="default")
    wait_for(lambda: marks_of(marks) == ["start"], 10, 0.02, "task started")
    started = time.monotonic()
    manager.stop(timeout=0.5)
    assert time.monotonic() - started < 0.5 + 3 + 5 + 1   # term, quit grace, kill wait
    assert marks_of(marks) == ["start"]
    manager.start()
    assert result.get(timeout=30)["node"] == f"default@{HOST}"
    assert marks_of(marks) == ["start", "start", "done"]


def test_close_leaves_no_process_behind(fast_settings, managers):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    manager = managers(fast_settings(CELERY_QUEUES="default,pdf_offset"))
    wait_for(lambda: all_running(manager, 2), 30, 0.1, "workers running")
    ours = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert len(ours) >= 4
    manager.close(timeout=10)
    assert all(gone(pid) for pid in ours)
    assert manager.health()["status"] == "unhealthy"
