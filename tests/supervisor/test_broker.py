"""BrokerMonitor: quick, cached, thread-safe, with hysteresis; passwords masked."""
from __future__ import annotations

import threading
import time

from app.broker import BrokerMonitor
from tests.conftest import free_port


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Flaky:
    """A probe whose outcome the test sets."""

    def __init__(self):
        self.ok = True
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if not self.ok:
            raise ConnectionError("refused")


def test_real_redis_up_then_down_then_up(redis_server):
    monitor = BrokerMonitor(redis_server.url, timeout=0.5, ttl=0.0)
    assert monitor.is_up()
    redis_server.stop()
    started = time.monotonic()
    assert monitor.is_up()          # one failure is not enough (hysteresis)
    assert not monitor.is_up()
    assert time.monotonic() - started < 1.0   # refused at once, no client-side retries
    assert "Error" in monitor.snapshot()["last_error"]
    redis_server.start()
    assert monitor.is_up()
    monitor.close()


def test_unix_socket_url_with_nothing_listening_is_down_quickly(tmp_path):
    monitor = BrokerMonitor(f"redis+socket://{tmp_path}/none.sock", timeout=0.3, fall_after=1)
    started = time.monotonic()
    assert not monitor.is_up()
    assert time.monotonic() - started < 1.0


def test_cache_and_hysteresis_with_a_fake_clock():
    clock, probe = Clock(), Flaky()
    monitor = BrokerMonitor("redis://example.invalid:1/0", ttl=1.0, fall_after=2,
                            rise_after=2, clock=clock, probe=probe)
    assert monitor.is_up() and probe.calls == 1
    assert monitor.is_up() and probe.calls == 1      # cached
    probe.ok = False
    clock.now += 1.0
    assert monitor.is_up()                           # first failure: still up
    clock.now += 1.0
    assert not monitor.is_up()                       # second: down
    down_since = monitor.snapshot()["since"]
    probe.ok = True
    clock.now += 1.0
    assert not monitor.is_up()                       # one success: still down
    probe.ok = False
    clock.now += 1.0
    assert not monitor.is_up()                       # the streak was broken
    probe.ok = True
    clock.now += 1.0
    monitor.is_up()
    clock.now += 1.0
    assert monitor.is_up()
    assert monitor.snapshot()["since"] >= down_since


def test_password_is_masked():
    monitor = BrokerMonitor("redis://:hunter2@127.0.0.1:1/0", probe=lambda: None)
    snapshot = monitor.snapshot()
    assert "hunter2" not in snapshot["url"] and "***" in snapshot["url"]


def test_no_url_means_down():
    monitor = BrokerMonitor(None)
    assert not monitor.is_up()
    assert monitor.snapshot()["last_error"] == "no broker configured"


def test_other_threads_read_the_cache_while_one_probes():
    release = threading.Event()
    probe = [lambda: None]
    monitor = BrokerMonitor("redis://x:1/0", ttl=0.0, probe=lambda: probe[0]())
    assert monitor.is_up()
    probe[0] = lambda: release.wait(5)
    prober = threading.Thread(target=monitor.refresh)
    prober.start()
    time.sleep(0.05)
    started = time.monotonic()
    assert monitor.is_up()                           # answered from the cache
    assert time.monotonic() - started < 0.05
    release.set()
    prober.join()


def test_non_redis_broker_unreachable_fails_fast():
    monitor = BrokerMonitor(f"amqp://guest:guest@127.0.0.1:{free_port()}//", timeout=0.5,
                            fall_after=1)
    started = time.monotonic()
    assert not monitor.is_up()
    assert time.monotonic() - started < 3
    assert "guest:***@" in monitor.snapshot()["url"]


def test_check_now_reports_this_probe():
    probe = Flaky()
    monitor = BrokerMonitor("redis://x:1/0", probe=probe)
    assert monitor.check_now()
    probe.ok = False
    assert not monitor.check_now()
    assert monitor.snapshot()["reachable"] is True   # one failure: hysteresis holds
