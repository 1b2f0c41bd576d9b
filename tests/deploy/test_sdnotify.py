"""app.sdnotify against a real datagram socket (path and abstract namespace)."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from app.sdnotify import (
    Notifier,
    NullNotifier,
    ReadinessReporter,
    health_status,
    socket_address,
    watchdog_interval,
)
from tests.conftest import wait_for
from tests.deploy.notify_socket import NotifySocket


@pytest.fixture
def notify_path():
    folder = Path(tempfile.mkdtemp(prefix="scm-notify-"))
    sock = NotifySocket(folder / "notify.sock")
    yield sock
    sock.close()
    folder.rmdir()


@pytest.fixture
def notify_abstract():
    sock = NotifySocket(abstract_name=f"scm-test-{uuid.uuid4().hex}")
    yield sock
    sock.close()


def test_messages_reach_a_path_socket(notify_path):
    env = {"NOTIFY_SOCKET": notify_path.env_value}
    notifier = Notifier.from_environment(env)
    notifier.status("booting")
    notifier.ready("mode=celery workers=3/3")
    notifier.stopping()
    notifier.close()
    wait_for(lambda: len(notify_path.snapshot()) == 3, 5, message="three datagrams")
    fields = [m for _, m in notify_path.snapshot()]
    assert fields == [{"STATUS": "booting"},
                      {"READY": "1", "STATUS": "mode=celery workers=3/3"},
                      {"STOPPING": "1"}]


def test_abstract_namespace_socket(notify_abstract):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": notify_abstract.env_value})
    assert notifier.address.startswith("\0")
    notifier.ready()
    notify_abstract.wait("READY", "1", timeout=5)
    notifier.close()


def test_from_environment_removes_variables_so_children_do_not_notify():
    env = {"NOTIFY_SOCKET": "/run/x.sock", "WATCHDOG_USEC": "4000000",
           "WATCHDOG_PID": str(os.getpid()), "OTHER": "kept"}
    notifier = Notifier.from_environment(env)
    assert env == {"OTHER": "kept"}
    assert notifier.watchdog_seconds == 4.0
    assert notifier.ping_every == 2.0


@pytest.mark.parametrize("env, expected", [
    ({"WATCHDOG_USEC": "3000000"}, 3.0),
    ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}, None),   # another process's
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "junk"}, None),
    ({}, None),
])
def test_watchdog_interval(env, expected):
    assert watchdog_interval(env, os.getpid()) == expected


def test_socket_address_forms():
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abc") == "\0abc"
    assert socket_address("vsock:2:1234") is None


def test_watchdog_tick_paces_pings_at_half_the_interval(notify_path):
    now = [100.0]
    notifier = Notifier(notify_path.env_value, watchdog_seconds=4.0, clock=lambda: now[0])
    for _step in range(20):  # 10 s of 0.5 s loop iterations
        notifier.watchdog_tick()
        now[0] += 0.5
    wait_for(lambda: len(notify_path.snapshot()) == 5, 5, message="five pings")
    assert all(m == {"WATCHDOG": "1"} for _, m in notify_path.snapshot())
    notifier.close()


def test_without_socket_everything_is_a_no_op():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled and notifier.ping_every is None
    notifier.ready("x")
    notifier.watchdog_tick()
    assert notifier.send("STATUS=x") is False
    assert NullNotifier().send("READY=1") is False


def test_watchdog_without_socket_is_off():
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "1000000"})
    assert notifier.ping_every is None


def test_a_missing_socket_is_logged_not_raised(tmp_path, caplog):
    notifier = Notifier(str(tmp_path / "absent.sock"))
    assert notifier.send("READY=1") is False
    assert notifier.send("READY=1") is False
    assert sum("sd_notify" in r.message for r in caplog.records) == 1


def test_health_status_line():
    line = health_status({"mode": "celery", "status": "healthy", "restart_count": 2,
                          "workers": {"running": 3, "expected": 3}})
    assert line == "mode=celery status=healthy workers=3/3 restarts=2"


class _Health:
    def __init__(self):
        self.body = {"mode": "threads", "status": "degraded", "restart_count": 0,
                     "workers": {"running": 0, "expected": 2}}

    def __call__(self):
        return dict(self.body)


def test_readiness_waits_for_every_worker(notify_path):
    health = _Health()
    reporter = ReadinessReporter(Notifier(notify_path.env_value), health)
    reporter.poll()
    health.body["workers"] = {"running": 1, "expected": 2}
    reporter.poll()
    health.body["workers"] = {"running": 2, "expected": 2}
    health.body.update(mode="celery", status="healthy")
    reporter.poll()
    reporter.poll()                      # nothing changed: no message
    health.body["workers"] = {"running": 1, "expected": 2}
    reporter.poll()
    wait_for(lambda: len(notify_path.snapshot()) == 4, 5, message="four messages")
    fields = [m for _, m in notify_path.snapshot()]
    assert fields[0] == {"STATUS": "starting: mode=threads status=degraded workers=0/2 restarts=0"}
    assert fields[1]["STATUS"].startswith("starting: mode=threads status=degraded workers=1/2")
    assert fields[2] == {"READY": "1", "STATUS": "mode=celery status=healthy workers=2/2 restarts=0"}
    assert fields[3] == {"STATUS": "mode=celery status=healthy workers=1/2 restarts=0"}


def test_readiness_after_the_grace_period_says_degraded(notify_path):
    now = [0.0]
    reporter = ReadinessReporter(Notifier(notify_path.env_value), _Health(), grace=30,
                                 clock=lambda: now[0])
    reporter.poll()
    now[0] = 31
    reporter.poll()
    found = notify_path.wait("READY", "1", timeout=5)
    assert found[1]["STATUS"].startswith("degraded: mode=threads")
