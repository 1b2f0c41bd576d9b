"""Fixtures for the supervisor tests: managers that are always closed, leftovers always killed.

Managers spawn real `celery worker` subprocesses loading
`tests.supervisor.worker_app` (the project's Celery configuration with
trivial tasks), so these tests do not depend on the card engine.
"""
from __future__ import annotations

import os
import signal

import psutil
import pytest

from app.supervisor.manager import CeleryWorkerManager
from tests.conftest import make_settings

TEST_APP = "tests.supervisor.worker_app"


def worker(status: dict, queue: str) -> dict:
    return next(w for w in status["workers"] if w["queue"] == queue)


def all_running(manager, count: int | None = None) -> bool:
    workers = manager.status()["workers"]
    return bool(workers) and all(w["state"] == "RUNNING" and w["responsive"] for w in workers) \
        and (count is None or len(workers) == count)


def kill_leftovers(before: set[int]) -> list[int]:
    """Kill every descendant of this test process that was not there before, by group."""
    leftovers = []
    for child in psutil.Process().children(recursive=True):
        if child.pid in before:
            continue
        leftovers.append(child.pid)
        try:
            if os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGKILL)
            else:
                child.kill()
        except (ProcessLookupError, psutil.Error, PermissionError):
            pass
    psutil.wait_procs([p for p in psutil.Process().children() if p.pid in leftovers],
                      timeout=3)
    return leftovers


@pytest.fixture
def no_leftovers():
    """Finalizer: every process a test started is stopped, even when the test failed."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield before
    kill_leftovers(before)


@pytest.fixture
def managers(no_leftovers):
    """Factory: managers(settings, **kwargs) -> an opened CeleryWorkerManager, closed at the end."""
    opened: list[CeleryWorkerManager] = []

    def factory(settings, *, open_now: bool = True, **kwargs) -> CeleryWorkerManager:
        kwargs.setdefault("worker_app", TEST_APP)
        manager = CeleryWorkerManager(settings, **kwargs)
        opened.append(manager)
        if open_now:
            manager.open()
        return manager

    yield factory
    for manager in opened:
        try:
            manager.close(timeout=3)
        except Exception:
            pass


@pytest.fixture
def fast_settings(tmp_path, redis_server):
    """Factory: settings for a manager on the test Redis with short, test-friendly intervals."""
    def factory(**overrides):
        values = dict(REDIS_URL=redis_server.url, START_CELERY_WORKER=True,
                      CELERY_HEALTH_CHECK_INTERVAL=1.0, CELERY_RESTART_DELAY=0.2,
                      CELERY_STOP_TIMEOUT=10, CELERY_LOG_LEVEL="INFO")
        values.update(overrides)
        return make_settings(tmp_path, **values)
    return factory


@pytest.fixture
def client_app():
    """Factory: a Celery client for settings (to send test tasks), closed at the end."""
    made = []

    def factory(settings):
        from app.celery_config import make_celery
        app = make_celery(settings, role="client")
        made.append(app)
        return app

    yield factory
    for app in made:
        try:
            app.close()
        except Exception:
            pass
