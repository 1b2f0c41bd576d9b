"""Process-level guarantees: one manager under `gunicorn -w 3`, and a fresh clone that
starts with no configuration and stops cleanly."""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time

import psutil
import pytest
import requests

from tests.conftest import free_port
from tests.e2e.conftest import ROOT, Server, base_env

pytestmark = pytest.mark.slow


def _celery_main_processes(root: psutil.Process) -> list[psutil.Process]:
    """Celery worker main processes below `root` (their prefork children excluded)."""
    found = []
    for proc in root.children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            parent_cmd = " ".join(proc.parent().cmdline())
        except (psutil.NoSuchProcess, AttributeError):
            continue
        if "celery" in cmd and " worker" in cmd and not ("celery" in parent_cmd
                                                         and " worker" in parent_cmd):
            found.append(proc)
    return found


def test_one_manager_under_gunicorn_w3(start_server, redis_server):
    server = start_server("gunicorn", extra_args=["-w", "3"], START_CELERY_WORKER="true",
                          REDIS_URL=redis_server.url)
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    admin = server.headers()

    gunicorn_workers = server.ps.children()
    assert len(gunicorn_workers) == 3
    mains = _celery_main_processes(server.ps)
    server.observe()
    assert len(mains) == 3, [" ".join(p.cmdline()) for p in mains]
    hosts = {proc.parent().pid for proc in mains}
    assert len(hosts) == 1 and hosts <= {w.pid for w in gunicorn_workers}

    # 20 calls on fresh connections land on all three gunicorn workers; all tell the same.
    views = []
    for _ in range(20):
        response = requests.get(server.url + "/api/celery/status", headers=admin, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        views.append((body["manager"]["pid"],
                      tuple(sorted((w["name"], w["pid"], w["state"]) for w in body["workers"]))))
    assert len(set(views)) == 1, set(views)
    manager_pid, workers = views[0]
    assert manager_pid in hosts
    assert {pid for _name, pid, _state in workers} == {proc.pid for proc in mains}

    assert server.stop() == 0


def _copy_project(target) -> None:
    ignore = shutil.ignore_patterns(".git", "instance", "__pycache__", ".pytest_cache",
                                    ".hypothesis", ".env", "out", "*.pyc")
    shutil.copytree(ROOT, target, ignore=ignore)


def test_fresh_clone_starts_with_no_environment(tmp_path):
    project = tmp_path / "project"
    _copy_project(project)
    port = free_port()
    # No configuration at all, only what any shell has, and a free port: another server
    # on this machine may hold the default 5000.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"),
           "LANG": "C.UTF-8", "PORT": str(port)}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    server = Server([sys.executable, "start_with_celery.py"], env, tmp_path / "server.log",
                    cwd=project)
    try:
        started = time.monotonic()
        body = server.wait_healthy(20)
        assert time.monotonic() - started < 20
        assert body["status"] in ("healthy", "degraded")
        assert (project / "instance" / "app.sqlite3").exists()
        # Keep watching until the workers are up, so the stop below sees the whole tree.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.get("/api/celery/health").json()[
                "workers"]["running"] < 3:
            server.observe()
            time.sleep(0.3)
        server.observe()
        assert any("redis-server" in " ".join(p.cmdline()) for p in server.ps.children())
        assert server.stop(signal.SIGTERM, timeout=60) == 0
    finally:
        server.close()


def test_dev_server_reloads_with_one_manager(tmp_path, redis_server):
    project = tmp_path / "project"
    _copy_project(project)
    port = free_port()
    env = base_env(tmp_path / "instance", port, START_CELERY_WORKER="true",
                   REDIS_URL=redis_server.url)
    server = Server([sys.executable, "start_dev_with_celery.py"], env, tmp_path / "dev.log",
                    cwd=project)
    try:
        server.wait_healthy(60)
        server.wait_workers(3, timeout=90)
        first = {p.pid for p in _celery_main_processes(server.ps)}
        assert len(first) == 3
        (project / "app" / "web" / "__init__.py").touch()  # a code change in the copy
        deadline = time.monotonic() + 90
        current = first
        while time.monotonic() < deadline:
            server.observe()
            current = {p.pid for p in _celery_main_processes(server.ps)}
            if len(current) == 3 and not current & first:
                break
            time.sleep(0.3)
        assert len(current) == 3 and not current & first, (first, current, server.tail())
        server.wait_workers(3, timeout=90)
        assert len(_celery_main_processes(server.ps)) == 3  # never two sets
        assert server.stop() == 0
    finally:
        server.close()
