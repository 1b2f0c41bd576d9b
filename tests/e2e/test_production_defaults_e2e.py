"""Issue 12, point 7 against a real start_with_celery.py in APP_ENV=production."""
from __future__ import annotations

import os
import stat

import pytest
import requests

from tests.e2e.jobs_helpers import wait_job

pytestmark = pytest.mark.slow

SECRET = "Vb3k9Qz7LmN2pXr8TwY4sHc6JdF1gKa5-t0Rq"
ADMIN = ("root", "Pale-otter-jumps-7-quietly")


def _group_or_other_bits(instance) -> list[str]:
    loose = []
    for folder, dirs, files in os.walk(instance):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
                loose.append(f"{oct(stat.S_IMODE(mode))} {path}")
    return loose


def test_production_server_defaults(start_server, tmp_path):
    instance = tmp_path / "instance"
    server = start_server("start_with_celery", instance=instance, APP_ENV="production",
                          JWT_SECRET_KEY=SECRET, ADMIN_USERNAME=ADMIN[0],
                          ADMIN_PASSWORD=ADMIN[1], EMBEDDED_REDIS="true",
                          START_CELERY_WORKER="true", CELERY_QUEUES="default",
                          CELERY_CONCURRENCY="1")
    server.wait_healthy(90)
    headers = server.headers(*ADMIN)

    # test_metrics_public_by_default_in_production: off without METRICS_TOKEN.
    metrics = server.get("/metrics")
    assert metrics.status_code == 404 and metrics.json()["error"]["code"] == "metrics_disabled"

    # test_responses_lack_security_headers, over real HTTP, health probe included.
    for path in ("/", "/api/celery/health", "/api/jobs", "/nowhere"):
        got = server.get(path)
        assert got.headers["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in got.headers["Content-Security-Policy"], path
        assert got.headers["X-Content-Type-Options"] == "nosniff", path
        assert got.headers["Referrer-Policy"] == "no-referrer", path
    login = requests.post(server.url + "/api/auth/login", timeout=30,
                          json={"username": ADMIN[0], "password": ADMIN[1]})
    assert login.headers["Cache-Control"] == "no-store"
    not_allowed = server.get("/api/auth/login")
    assert not_allowed.status_code == 405 and "POST" in not_allowed.headers["Allow"]

    # test_instance_folder_files_are_private: a job's outputs, the database, logs, pid
    # files and the embedded Redis' files are all made by the server's processes.
    job = server.post("/api/jobs/calibration", headers=headers, json={"paper_size": "a4"})
    assert job.status_code == 202, job.text
    assert wait_job(server, headers, job.json()["id"])["status"] == "succeeded"
    assert _group_or_other_bits(instance) == []
    assert server.stop() == 0
