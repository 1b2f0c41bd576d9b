"""sd_notify from a real start_with_celery.py to a datagram socket the test owns."""
from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import free_port
from tests.deploy.notify_socket import NotifySocket
from tests.e2e.conftest import ROOT, Server, base_env

pytestmark = pytest.mark.slow
WATCHDOG_SECONDS = 3.0
QUEUES = ("pdf_generation", "default")


@pytest.fixture
def notify():
    folder = Path(tempfile.mkdtemp(prefix="scm-sd-"))
    sock = NotifySocket(folder / "notify")
    yield sock
    sock.close()
    folder.rmdir()


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for server in started:
        server.close()


def start(servers, tmp_path, redis_server, notify, script: Path, *args: str,
          **extra) -> Server:
    port = free_port()
    env = base_env(tmp_path / "instance", port, REDIS_URL=redis_server.url,
                   START_CELERY_WORKER="true", CELERY_QUEUES=",".join(QUEUES),
                   NOTIFY_SOCKET=notify.env_value,
                   WATCHDOG_USEC=str(int(WATCHDOG_SECONDS * 1_000_000)), **extra)
    server = Server([sys.executable, str(script), *args], env, tmp_path / "server.log")
    servers.append(server)
    return server


def celery_children(server: Server) -> list[str]:
    names = []
    for child in server.observe():
        try:
            cmd = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
        if "celery" in cmd and " worker" in cmd:
            names.append(cmd)
    return names


def gaps(stamps: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(stamps)]


def test_ready_watchdog_freeze_and_stopping(servers, tmp_path, redis_server, notify):
    """One server for all of it (a boot costs most of the time): the wrapper runs
    start_with_celery.main() unchanged until the test freezes the manager thread."""
    flag = tmp_path / "freeze"
    server = start(servers, tmp_path, redis_server, notify,
                   Path(__file__).with_name("frozen_manager.py"), SCM_TEST_FREEZE_FILE=str(flag))
    ready_at, ready = notify.wait("READY", "1", timeout=120)
    assert_ready_only_after_the_workers_run(server, notify, ready_at, ready)
    assert_watchdog_at_the_asked_interval(notify, ready_at)
    assert_frozen_manager_stops_the_pings(server, notify, flag)
    assert server.stop() == 0
    assert notify.first("STOPPING", "1"), notify.snapshot()


def assert_ready_only_after_the_workers_run(server, notify, ready_at, ready):
    assert ready["STATUS"].startswith("mode=celery"), ready
    assert f"workers={len(QUEUES)}/{len(QUEUES)}" in ready["STATUS"], ready
    # At READY the workers are processes that exist and answer (health agrees).
    assert len(celery_children(server)) >= len(QUEUES)
    body = server.session.get(server.url + "/api/celery/health", timeout=5).json()
    assert body["workers"] == {"running": len(QUEUES), "expected": len(QUEUES)}
    # Every status before READY said "starting" (fewer workers running, or no HTTP yet).
    before = [f for stamp, f in notify.snapshot() if stamp < ready_at and "STATUS" in f]
    assert before and all(f["STATUS"].startswith("starting: ") for f in before), before
    # Only our process talks to systemd: gunicorn and the workers never got NOTIFY_SOCKET.
    assert sum("READY" in f for _, f in notify.snapshot()) == 1
    assert not any("Gunicorn" in f.get("STATUS", "") for _, f in notify.snapshot())


def assert_watchdog_at_the_asked_interval(notify, ready_at):
    time.sleep(3 * WATCHDOG_SECONDS)
    pings = [t for t in notify.times("WATCHDOG", "1") if t > ready_at]
    assert len(pings) >= 3, notify.snapshot()
    intervals = gaps(pings)
    assert max(intervals) < WATCHDOG_SECONDS, intervals                  # never late
    assert statistics.median(intervals) >= WATCHDOG_SECONDS / 2 * 0.9, intervals  # no spam


def assert_frozen_manager_stops_the_pings(server, notify, flag):
    flag.touch()
    frozen_at = time.monotonic()
    time.sleep(2 * WATCHDOG_SECONDS)
    # One ping may already be on its way when the flag appears (one loop iteration).
    late = [t for t in notify.times("WATCHDOG", "1") if t > frozen_at + 1.5]
    assert late == [], late
    # The hang is invisible to HTTP: the probe still answers from the last snapshot.
    # Only the watchdog notices; systemd would now kill and restart the unit.
    assert server.session.get(server.url + "/api/celery/health", timeout=5).status_code == 200
    flag.unlink()
    thawed_at = time.monotonic()
    time.sleep(WATCHDOG_SECONDS)
    assert [t for t in notify.times("WATCHDOG", "1") if t > thawed_at], notify.snapshot()


def test_worker_only_host_is_ready_without_http(servers, tmp_path, redis_server, notify):
    """`--no-web` (the compose `worker` service, the worker unit): READY=1 once the
    workers run, with no HTTP server at all."""
    worker = start(servers, tmp_path, redis_server, notify, ROOT / "start_with_celery.py",
                   "--no-web")
    _, ready = notify.wait("READY", "1", timeout=120)
    assert f"workers={len(QUEUES)}/{len(QUEUES)}" in ready["STATUS"], ready
    assert len(celery_children(worker)) >= len(QUEUES)
    assert not answers(worker)  # nothing listens on PORT
    time.sleep(WATCHDOG_SECONDS)
    assert notify.times("WATCHDOG", "1")
    assert worker.stop() == 0
    assert notify.first("STOPPING", "1")


def answers(server: Server) -> bool:
    try:
        server.session.get(server.url + "/api/celery/health", timeout=2)
        return True
    except requests.RequestException:
        return False
