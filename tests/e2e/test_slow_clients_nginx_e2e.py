"""Issue 12, point 4 behind nginx: deploy/nginx.conf in front of a real start_with_celery.py."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from tests.conftest import free_port, wait_for
from tests.e2e.conftest import ROOT
from tests.e2e.test_slow_clients_e2e import Dripper

pytestmark = pytest.mark.slow


def _nginx_config(tmp_path, listen: int, app_port: int) -> str:
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};") \
        .replace("server 127.0.0.1:5000;", f"server 127.0.0.1:{app_port};")
    temp = tmp_path / "nginx"
    temp.mkdir()
    (temp / "site.conf").write_text(site)
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach the temp folder
    paths = "\n".join(f"{name}_temp_path {temp / name};"
                      for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = temp / "nginx.conf"
    config.write_text(f"""{user}
worker_processes 1;
pid {temp / 'nginx.pid'};
error_log {temp / 'error.log'} info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    {paths}
    include {temp / 'site.conf'};
}}
""")
    return str(config)


@pytest.fixture
def nginx(tmp_path):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(binary), "nginx is not installed (.ci/run installs nginx-light)"
    procs = []

    def start(app_port: int) -> str:
        listen = free_port()
        config = _nginx_config(tmp_path, listen, app_port)
        proc = subprocess.Popen([binary, "-c", config, "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        procs.append(proc)
        url = f"http://127.0.0.1:{listen}"
        wait_for(lambda: _answers(url), 20, message="nginx")
        return url

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _answers(url: str) -> bool:
    try:
        requests.get(url + "/api/celery/health", timeout=2)
        return True
    except requests.RequestException:
        return False


def test_20_slow_connections_behind_nginx(start_server, nginx):
    server = start_server("start_with_celery", TRUSTED_PROXIES="1", GUNICORN_WORKERS="1",
                          GUNICORN_THREADS="4")
    server.wait_healthy(90)
    url = nginx(server.port)
    port = int(url.rsplit(":", 1)[1])
    drippers = [Dripper(port, "headers" if i % 2 else "body") for i in range(20)]
    try:
        time.sleep(5)
        for path in ("/api/celery/health", "/", "/api/openapi.json"):
            started = time.monotonic()
            response = requests.get(url + path, timeout=10)
            elapsed = time.monotonic() - started
            assert response.status_code in (200, 503)
            assert elapsed < 1.0, f"{path} took {elapsed:.2f} s behind 20 slow clients"
        # nginx's client_header_timeout ends every slow head within 10 s.
        heads = [d for i, d in enumerate(drippers) if i % 2]
        wait_for(lambda: all(d.closed_at for d in heads), 20, message="slow heads closed")
    finally:
        for dripper in drippers:
            dripper.close()
    assert server.stop() == 0
