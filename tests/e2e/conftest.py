"""Real server processes for end-to-end tests.

Every server runs on 127.0.0.1 and a free port, on the test's own instance folder, with
an environment built from scratch (nothing leaks in from the developer's shell). Every
process a test starts is stopped by the fixture, and the fixture checks with psutil
that no descendant (gunicorn workers, Celery workers, embedded Redis) outlived it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import free_port
from tests.database import current_database_url

ROOT = Path(__file__).resolve().parents[2]
ADMIN = ("admin", "admin-password-1")
SECRET = "e2e-secret-" + "k" * 40


@pytest.fixture(autouse=True)
def _database_backend(db_backend):
    """SQLite, or PostgreSQL for the tests marked @pytest.mark.backends(...)."""
    return db_backend


def base_env(instance: Path, port: int, **extra) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "INSTANCE_PATH": str(instance),
        "APP_ENV": "testing",
        "JWT_SECRET_KEY": SECRET,
        "ADMIN_USERNAME": ADMIN[0],
        "ADMIN_PASSWORD": ADMIN[1],
        "LOG_LEVEL": "INFO",
        "EMBEDDED_REDIS": "false",
        "START_CELERY_WORKER": "false",
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": "8",
        # Quick supervision in tests: pings every 2 s, short warm stops.
        "CELERY_HEALTH_CHECK_INTERVAL": "2",
        "CELERY_STOP_TIMEOUT": "10",
        "CELERY_CONCURRENCY": "3",
    }
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if current_database_url():  # a test marked to run on PostgreSQL too
        env["DATABASE_URL"] = current_database_url()
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Server:
    """One server process tree (start_with_celery.py, run.py or gunicorn) under test."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path = ROOT):
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)
        self.seen: dict[int, float] = {}  # every descendant ever observed: pid -> create time
        self.session = requests.Session()

    # --- life ----------------------------------------------------------------
    def observe(self) -> list[psutil.Process]:
        try:
            children = self.ps.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for child in children:
            try:
                self.seen.setdefault(child.pid, child.create_time())
            except psutil.NoSuchProcess:
                pass
        return children

    def wait_healthy(self, timeout: float = 60, *, status=(200,)) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.observe()
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                response = self.session.get(self.url + "/api/celery/health", timeout=2)
                last = (response.status_code, response.text)
                if response.status_code in status:
                    return response.json()
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"not healthy in {timeout}s (last: {last}):\n{self.tail()}")

    def wait_workers(self, running: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        body = None
        while time.monotonic() < deadline:
            self.observe()
            body = self.session.get(self.url + "/api/celery/health", timeout=5).json()
            if body["workers"]["running"] == running and body["workers"]["expected"] == running:
                return body
            time.sleep(0.3)
        raise AssertionError(f"workers never reached {running}: {body}\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the top process, wait, and check that no descendant is left."""
        self.observe()
        code = self.proc.poll()
        if code is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
                raise AssertionError(f"server did not stop within {timeout}s:\n{self.tail()}")
        leftovers = self.leftovers(grace=10)
        if leftovers:
            self.kill_all()
            raise AssertionError(f"processes left behind: {leftovers}\n{self.tail()}")
        return code

    def leftovers(self, grace: float = 0) -> list[str]:
        deadline = time.monotonic() + grace
        while True:
            alive = []
            for pid, created in self.seen.items():
                try:
                    proc = psutil.Process(pid)
                    if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                        alive.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.2)

    def kill_all(self) -> None:
        """Last resort for a failed test: SIGKILL exactly the processes this server made."""
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for pid, created in self.seen.items():
            try:
                proc = psutil.Process(pid)
                if proc.create_time() == created:  # the same process, not a reused pid
                    proc.kill()
            except psutil.NoSuchProcess:
                pass

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.stop(timeout=40)
            except AssertionError:
                pass
        else:
            self.kill_all()
        self.session.close()
        self.log.close()

    def tail(self, lines: int = 60) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    # --- HTTP helpers -----------------------------------------------------------------
    def login(self, username: str = ADMIN[0], password: str = ADMIN[1]) -> dict:
        response = self.session.post(self.url + "/api/auth/login",
                                     json={"username": username, "password": password},
                                     timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def headers(self, username: str = ADMIN[0], password: str = ADMIN[1]) -> dict:
        return {"Authorization": f"Bearer {self.login(username, password)['access_token']}"}

    def get(self, path: str, **kwargs):
        kwargs.setdefault("timeout", 60)
        return self.session.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs):
        kwargs.setdefault("timeout", 120)
        return self.session.post(self.url + path, **kwargs)


@pytest.fixture
def start_server(tmp_path):
    """Start servers for this test: start_server(kind, **env) with kind in
    start_with_celery | run | gunicorn; all are stopped (and checked) at teardown."""
    servers: list[Server] = []

    def start(kind: str = "start_with_celery", *, extra_args: list[str] | None = None,
              cwd: Path = ROOT, instance: Path | None = None, **env) -> Server:
        port = free_port()
        instance = instance or tmp_path / f"instance-{len(servers)}"
        environment = base_env(instance, port, **env)
        if kind == "gunicorn":
            argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
        else:
            argv = [sys.executable, str(cwd / f"{kind}.py")]
        server = Server(argv + (extra_args or []), environment,
                        tmp_path / f"server-{len(servers)}.log", cwd=cwd)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def add_user(server: Server, username: str, password: str, role: str = "user") -> None:
    """Create a user the way an operator does: `flask users create` on the instance."""
    args = [sys.executable, "-m", "flask", "--app", "app:create_app", "users", "create",
            username, "--password-stdin"] + (["--admin"] if role == "admin" else [])
    result = subprocess.run(args, input=password + "\n", capture_output=True, text=True,
                            cwd=ROOT, env=server.env, timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
