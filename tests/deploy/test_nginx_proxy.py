"""A real nginx with deploy/nginx.conf in front of a real start_with_celery.py.

Client addresses: the whole 127.0.0.0/8 is loopback, so clients bound to 127.0.0.2 and
127.0.0.3 are two different hosts to nginx, which is what the login limit must see.
"""
from __future__ import annotations

import http.client
import io
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from pypdf import PdfReader

from app.settings import Settings
from tests.conftest import RedisServer, free_port
from tests.deploy.nginx_proxy import NGINX, NginxProxy
from tests.deploy.project_facts import DEPLOY
from tests.e2e.conftest import ADMIN, ROOT, Server, base_env
from tests.e2e.jobs_helpers import card_files, wait_job

pytestmark = pytest.mark.slow
LOGIN_LIMIT = 4


class Through:
    """The server's HTTP helpers, aimed at the proxy instead of the app."""

    def __init__(self, server: Server, url: str):
        self.server, self.url = server, url
        self.session = requests.Session()

    def get(self, path, **kwargs):
        kwargs.setdefault("timeout", 60)
        return self.session.get(self.url + path, **kwargs)

    def post(self, path, **kwargs):
        kwargs.setdefault("timeout", 120)
        return self.session.post(self.url + path, **kwargs)

    def tail(self):
        return self.server.tail()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nginx-stack")
    redis = RedisServer(folder / "redis")
    redis.start()
    port = free_port()
    env = base_env(folder / "instance", port, REDIS_URL=redis.url, START_CELERY_WORKER="true",
                   TRUSTED_PROXIES="1", LOGIN_RATE_LIMIT=f"{LOGIN_LIMIT} per minute",
                   LOGIN_ACCOUNT_RATE_LIMIT="100 per minute",  # only the address limit here
                   CELERY_QUEUES="pdf_generation", CELERY_CONCURRENCY="2")
    server = Server([sys.executable, str(ROOT / "start_with_celery.py")], env,
                    folder / "server.log")
    proxy = NginxProxy(folder / "nginx", f"127.0.0.1:{port}")
    try:
        server.wait_healthy(90)
        server.wait_workers(1, timeout=90)
        proxy.start()
        yield server, proxy
    finally:
        proxy.stop()
        server.close()
        redis.stop()


def test_config_passes_nginx_t(tmp_path):
    result = NginxProxy(tmp_path, "127.0.0.1:9").test_config()
    assert result.returncode == 0, result.stderr


def test_upload_cap_equals_max_upload_mb_default():
    text = (DEPLOY / "nginx.conf").read_text()
    cap = re.search(r"client_max_body_size (\d+)m;", text)
    assert cap and int(cap.group(1)) == Settings.model_fields["MAX_UPLOAD_MB"].default


def test_health_probe_headers_and_gzip(stack):
    _server, proxy = stack
    health = requests.get(proxy.url + "/api/celery/health", timeout=10)
    assert health.status_code == 200 and health.json()["mode"] == "celery"
    for header in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
                   "Content-Security-Policy"):
        assert header in health.headers, header
    assert "nginx/" not in health.headers.get("Server", "")  # no version disclosed
    # Each security header once, whoever set it.
    assert "," not in health.headers["X-Frame-Options"]
    spec = requests.get(proxy.url + "/api/openapi.json", timeout=10,
                        headers={"Accept-Encoding": "gzip"})
    assert spec.status_code == 200 and spec.headers.get("Content-Encoding") == "gzip"
    assert spec.json()["openapi"]
    page = requests.get(proxy.url + "/", timeout=10, headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200 and "<html" in page.text.lower()
    if len(page.content) >= 1024:
        assert page.headers.get("Content-Encoding") == "gzip"


def test_login_upload_64_cards_and_download_through_the_proxy(stack):
    server, proxy = stack
    client = Through(server, proxy.url)
    token = client.post("/api/auth/login", json={"username": ADMIN[0],
                                                 "password": ADMIN[1]}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    form = {"card_size": "standard", "paper_size": "letter", "name": "proxied"}
    submitted = client.post("/api/jobs/sheets", headers=headers, data=form,
                            files=card_files(64))
    assert submitted.status_code == 202, submitted.text
    job = wait_job(client, headers, submitted.json()["id"], timeout=180)
    assert job["status"] == "succeeded" and job["mode"] == "celery", job
    proxied = client.get(job["result_url"], headers=headers)
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["Content-Type"].startswith("application/pdf")
    assert "Content-Encoding" not in proxied.headers  # PDFs are not re-compressed
    direct = requests.get(server.url + job["result_url"], headers=headers, timeout=60)
    assert proxied.content == direct.content and proxied.content.startswith(b"%PDF-")
    assert len(PdfReader(io.BytesIO(proxied.content)).pages) >= 2


def _login_from(proxy: NginxProxy, source: str, password: str, spoof: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10,
                                      source_address=(source, 0))
    headers = {"Content-Type": "application/json"}
    if spoof:
        headers["X-Forwarded-For"] = spoof
    try:
        conn.request("POST", "/api/auth/login", headers=headers,
                     body=json.dumps({"username": ADMIN[0], "password": password}))
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_login_limit_keys_on_the_real_client_address(stack):
    _server, proxy = stack
    statuses = [_login_from(proxy, "127.0.0.2", "wrong-password", spoof=f"198.51.100.{i}")[0]
                for i in range(LOGIN_LIMIT + 1)]
    # A forged X-Forwarded-For per attempt does not buy more attempts: nginx sends the
    # peer address alone and TRUSTED_PROXIES=1 takes that one.
    assert statuses[:LOGIN_LIMIT] == [401] * LOGIN_LIMIT, statuses
    # Past the limit a wrong password is refused with 429 (the right one would still get
    # in after the throttle delay).
    status, body = _login_from(proxy, "127.0.0.2", "wrong-password", spoof="198.51.100.99")
    assert status == 429 and body["error"]["code"], body
    # Another client is not limited by the first one's failures.
    status, body = _login_from(proxy, "127.0.0.3", "wrong-password")
    assert status == 401, body
    status, body = _login_from(proxy, "127.0.0.3", ADMIN[1])
    assert status == 200 and body["access_token"]
    assert "127.0.0.2 " in proxy.access_log() and "127.0.0.3 " in proxy.access_log()


def test_upload_over_the_limit_is_413_json_before_the_body(stack):
    _, proxy = stack
    too_big = (Settings.model_fields["MAX_UPLOAD_MB"].default + 1) * 1024 * 1024
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall((f"POST /api/jobs/sheets HTTP/1.1\r\nHost: localhost\r\n"
                      f"Content-Type: multipart/form-data; boundary=x\r\n"
                      f"Content-Length: {too_big}\r\n\r\n").encode() + b"--x\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:300]
    assert b"application/json" in head
    assert json.loads(body)["error"]["code"] == "payload_too_large"


def _healthcheck(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DEPLOY / "healthcheck.py"), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_container_healthcheck_script_on_the_real_stack(stack, tmp_path):
    server, proxy = stack
    env = dict(server.env, PYTHONPATH=str(ROOT))
    assert _healthcheck(env, "http").returncode == 0                 # PORT from the env
    assert _healthcheck(env, "http", proxy.url + "/api/celery/health").returncode == 0
    manager = _healthcheck(env, "manager")
    assert manager.returncode == 0, manager.stdout + manager.stderr
    assert "pdf_generation@" in manager.stdout
    # Nothing answers: both forms say unhealthy.
    assert _healthcheck(env, "http", f"http://127.0.0.1:{free_port()}/").returncode == 1
    elsewhere = dict(env, INSTANCE_PATH=str(tmp_path / "no-manager"))
    assert _healthcheck(elsewhere, "manager").returncode == 1


def test_site_fits_debians_own_nginx_conf(tmp_path):
    """Step 6 of deploy/README.md: the file goes into conf.d of Debian's nginx.conf, whose
    http block already sets things (gzip on, sendfile, logs): nothing may clash. Debian's
    file is used as installed, with only its pid, log and temp paths moved into tmp_path
    (so the test leaves nothing on the machine) and conf.d pointed at the site alone."""
    debian = Path("/etc/nginx/nginx.conf").read_text()
    assert "include /etc/nginx/conf.d/*.conf;" in debian
    for sub in ("logs", "cache"):
        (tmp_path / sub).mkdir()
    site = tmp_path / "site.conf"
    site.write_text((DEPLOY / "nginx.conf").read_text())
    paths = "".join(f"{name}_temp_path {tmp_path / 'cache' / name}; "
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    moved = (debian.replace("include /etc/nginx/conf.d/*.conf;", f"include {site}; {paths}")
             .replace("include /etc/nginx/sites-enabled/*;", "")
             .replace("/run/nginx.pid", str(tmp_path / "nginx.pid"))
             .replace("/var/log/nginx/", f"{tmp_path}/logs/"))
    (tmp_path / "nginx.conf").write_text(moved)
    # Debian's default prefix, so its modules-enabled/ (relative paths) still load.
    result = subprocess.run([NGINX, "-t", "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
