"""The one-manager-per-instance control plane: lock, socket, proxy, takeover, no-manager mode.

These use a fake manager object (the real one is exercised end to end in tests/e2e).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from app.supervisor.control import (
    CONSUMERS_SLACK,
    CONSUMERS_TIMEOUT,
    ManagerHandle,
    socket_path,
)
from app.supervisor.errors import InvalidRequest, ManagerUnavailable
from tests.conftest import make_settings
from tests.web.fakes import FakeManager


@pytest.fixture
def settings(tmp_path):
    s = make_settings(tmp_path)
    s.ensure_dirs()
    return s


@pytest.fixture
def handles(settings):
    made = []

    def new():
        handle = ManagerHandle(settings)
        made.append(handle)
        return handle

    yield new
    for handle in made:
        handle.close()


def test_exactly_one_owner_and_proxies_share_it(handles):
    first, second, third = handles(), handles(), handles()
    assert first.acquire(FakeManager)
    assert not second.acquire(FakeManager)
    assert first.is_owner and not second.is_owner and not third.is_owner
    # Calls from a proxy run on the owner's manager.
    assert second.restart(queue="default")["mode"] == "celery"
    assert third.purge(["pdf_offset"]) == {"purged": {"pdf_offset": 0}}
    calls = first.manager.calls
    assert ("restart", {"queue": "default"}) in calls
    assert ("purge", {"queues": ["pdf_offset"]}) in calls
    assert second.status()["workers"][0]["pid"] == first.status()["workers"][0]["pid"]
    assert third.worker_available("default") and not third.worker_available("pdf_offset")


def test_socket_is_private(handles, settings):
    assert handles().acquire(FakeManager)
    mode = stat.S_IMODE(os.stat(socket_path(settings)).st_mode)
    assert mode == 0o600


def test_errors_cross_the_socket_with_their_type(handles):
    owner, proxy = handles(), handles()
    owner.acquire(FakeManager)
    with pytest.raises(InvalidRequest, match="bogus"):
        proxy.start(queues=["bogus"])
    owner.manager.broker_down = True
    from app.supervisor.errors import BrokerUnavailable
    with pytest.raises(BrokerUnavailable):
        proxy.tasks()
    with pytest.raises(BrokerUnavailable):  # kombu's OperationalError maps to 503 too
        proxy.stats()
    assert proxy.restart()["workers"]  # the broker state does not matter to a restart
    assert owner.manager.calls[-1] == ("restart", {"queue": None})


def test_health_through_the_proxy_is_cached(handles):
    owner, proxy = handles(), handles()
    owner.acquire(FakeManager)
    first = proxy.health()
    assert first["status"] == "healthy"
    t0 = time.perf_counter()
    for _ in range(1000):
        proxy.health()
    assert (time.perf_counter() - t0) / 1000 < 0.001  # served from the cache


def test_without_any_manager(handles):
    lonely = handles()
    health = lonely.health()
    assert health["status"] == "degraded" and health["mode"] == "threads"
    assert health["workers"] == {"running": 0, "expected": 0}
    status = lonely.status()
    assert status["manager"]["running"] is False and status["workers"] == []
    for verb in (lambda: lonely.start(), lambda: lonely.stop(), lambda: lonely.restart(),
                 lambda: lonely.tasks(), lambda: lonely.stats(),
                 lambda: lonely.purge(["default"])):
        with pytest.raises(ManagerUnavailable):
            verb()


def test_takeover_when_the_owner_goes_away(handles):
    owner, standby, plain = handles(), handles(), handles()
    assert owner.acquire(FakeManager)
    assert not standby.acquire(FakeManager, takeover=True)
    owner.close()
    # The standby finds nobody on the socket, takes the lock, and answers itself.
    assert standby.restart(queue="default")["mode"] == "celery"
    assert standby.is_owner
    assert plain.restart(queue="pdf_offset")["mode"] == "celery"
    assert ("restart", {"queue": "pdf_offset"}) in standby.manager.calls


OWNER_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.conftest import make_settings
    from tests.web.fakes import FakeManager
    from app.supervisor.control import ManagerHandle
    from pathlib import Path
    settings = make_settings(Path({tmp!r}))
    handle = ManagerHandle(settings)
    assert handle.acquire(FakeManager)
    print("owner", flush=True)
    time.sleep(120)
""")


def test_takeover_after_the_owner_process_is_killed(tmp_path, settings, handles):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = OWNER_SCRIPT.format(root=root, tmp=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "owner"
        standby = handles()
        assert not standby.acquire(FakeManager, takeover=True)
        assert standby.status()["manager"]["pid"] == proc.pid
        proc.kill()
        proc.wait(10)
        # The lock died with its process; the stale socket file refuses connections.
        status = standby.status()
        assert standby.is_owner and status["manager"]["pid"] == os.getpid()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


def test_long_instance_paths_get_a_short_socket(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    settings = make_settings(deep)
    assert len(str(socket_path(settings))) <= 100
    settings.ensure_dirs()
    handle = ManagerHandle(settings)
    try:
        assert handle.acquire(FakeManager)
        assert ManagerHandle(settings).restart() is not None
    finally:
        handle.close()


def test_without_a_manager_jobs_go_to_threads_when_nobody_consumes(tmp_path, redis_server,
                                                                   monkeypatch):
    """The broker answering is not enough: some live worker must consume the queue."""
    from app.broker import BrokerClient
    from app.supervisor.errors import BrokerUnavailable

    settings = make_settings(tmp_path, REDIS_URL=redis_server.url)
    settings.ensure_dirs()
    lonely = ManagerHandle(settings)
    try:
        started = time.monotonic()
        assert lonely.worker_available("default") is False
        assert time.monotonic() - started < CONSUMERS_TIMEOUT + CONSUMERS_SLACK + 0.5
        # Cached: the next questions do not broadcast again.
        started = time.monotonic()
        assert lonely.worker_available("pdf_offset") is False
        assert time.monotonic() - started < 0.3
        # When the workers cannot be asked, the broker decides.
        monkeypatch.setattr(BrokerClient, "consumers",
                            lambda self, timeout, slack: (_ for _ in ()).throw(BrokerUnavailable("x")))
        lonely._consumers.clear()
        assert lonely.worker_available("default") is True
        control = lonely._control
    finally:
        lonely.close()
    assert control is not None and control._closed
