"""The Flower role as the compose file and the unit run it: `celery -A celery_app flower`
with basic auth from FLOWER_BASIC_AUTH, and the health check the container uses."""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests

from tests.conftest import free_port, wait_for
from tests.deploy.project_facts import DEPLOY, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def flower(redis_server, tmp_path):
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PYTHONPATH": str(ROOT), "SCM_ENV_FILE": "", "APP_ENV": "testing",
           "INSTANCE_PATH": str(tmp_path / "instance"), "JWT_SECRET_KEY": "f" * 48,
           "REDIS_URL": redis_server.url, "EMBEDDED_REDIS": "false",
           "FLOWER_BASIC_AUTH": "ops:flower-secret-1"}
    log = (tmp_path / "flower.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_app", "flower",
                             "--address=127.0.0.1", f"--port={port}"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up():
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        try:
            return requests.get(url + "/healthcheck", timeout=2).status_code == 200
        except requests.RequestException:
            return False
    try:
        wait_for(up, 60, interval=0.3, message="flower to answer")
        yield url, env
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_flower_needs_basic_auth_and_answers_the_health_check(flower):
    url, env = flower
    assert requests.get(url + "/", timeout=10).status_code == 401
    assert requests.get(url + "/", timeout=10, auth=("ops", "wrong")).status_code == 401
    assert requests.get(url + "/", timeout=10, auth=("ops", "flower-secret-1")).status_code == 200
    check = subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), "http",
                            url + "/healthcheck"], env=env, capture_output=True, text=True,
                           timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
