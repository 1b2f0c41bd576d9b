"""Fixtures for the jobs tests: stores, fake broker views, PNG makers, Celery workers."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.jobs.store import JobStore
from tests.conftest import wait_for
from tests.database import current_database_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _database_backend(db_backend):
    """Every jobs test runs on SQLite and on PostgreSQL (see tests.database)."""
    return db_backend


@pytest.fixture
def store(tmp_path) -> JobStore:
    return JobStore(current_database_url() or tmp_path / "jobs.sqlite3")


class FakeMonitor:
    """A BrokerMonitor stand-in whose answer the test sets."""

    def __init__(self, up: bool = True):
        self.up = up

    def is_up(self) -> bool:
        return self.up


def png_bytes(color=(200, 30, 30), size=(60, 84)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


class CeleryWorker:
    """A real `celery worker` subprocess in its own process group."""

    def __init__(self, env: dict, queues: str, name: str, log_path: Path,
                 app_module: str = "celery_app", concurrency: int = 1):
        self.env, self.queues, self.name = env, queues, name
        self.log_path, self.app_module, self.concurrency = log_path, app_module, concurrency
        self.proc: subprocess.Popen | None = None

    @property
    def node(self) -> str:
        import socket
        return f"{self.name}@{socket.gethostname()}"

    def start(self) -> CeleryWorker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", self.app_module, "worker",
             "-Q", self.queues, "-P", "prefork", "-c", str(self.concurrency),
             "-n", f"{self.name}@%h", "--loglevel", "INFO", "--without-gossip",
             "--without-mingle", "-E"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready():
            assert self.proc.poll() is None, self.log_tail()
            return b"ready." in self.log_path.read_bytes()
        wait_for(ready, timeout, 0.1, f"worker {self.name} ready")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL the main process only (its pool children die by PDEATHSIG)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except ProcessLookupError:
                pass
        else:
            # Main process gone: make sure no pool child of its group is left.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def worker_env(settings, broker_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "CELERY_", "JWT_", "ADMIN_"))}
    env.update(
        APP_ENV="testing",
        INSTANCE_PATH=str(settings.INSTANCE_PATH),
        CELERY_BROKER_URL=broker_url,
        CELERY_RESULT_BACKEND=broker_url,
        EMBEDDED_REDIS="false",
        JWT_SECRET_KEY=settings.JWT_SECRET_KEY,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    if settings.DATABASE_URL:
        env["DATABASE_URL"] = settings.DATABASE_URL
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def celery_workers(tmp_path):
    """Factory: start_worker(settings, broker_url, queues, name=...) -> CeleryWorker."""
    started: list[CeleryWorker] = []

    def start(settings, broker_url: str, queues: str, *, name: str | None = None,
              app_module: str = "celery_app", wait: bool = True, **env) -> CeleryWorker:
        name = name or queues.replace(",", "-")
        worker = CeleryWorker(worker_env(settings, broker_url, **env), queues, name,
                              tmp_path / f"worker-{name}-{len(started)}.log", app_module)
        started.append(worker)
        worker.start()
        if wait:
            worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "redis: the test uses the redis_server fixture")
