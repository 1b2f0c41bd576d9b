"""A real nginx running deploy/nginx.conf, moved to loopback ports and a temp folder."""
from __future__ import annotations

import getpass
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.deploy.project_facts import DEPLOY

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def site_conf(listen_port: int, upstream: str) -> str:
    """deploy/nginx.conf with only where it listens and where the app is changed."""
    text = (DEPLOY / "nginx.conf").read_text()
    for old, new in (("listen 80;", f"listen 127.0.0.1:{listen_port};"),
                     ("server 127.0.0.1:5000;", f"server {upstream};")):
        assert old in text, f"deploy/nginx.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


def main_conf(folder: Path, site: Path, http_preamble: str = "") -> str:
    """A minimal nginx.conf around the site, like a distribution's, in `folder`."""
    paths = "\n".join(f"    {name}_temp_path {folder / 'cache' / name};"
                      for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""user {getpass.getuser()};
worker_processes 1;
pid {folder / 'nginx.pid'};
error_log {folder / 'logs' / 'error.log'} info;
events {{ worker_connections 512; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {folder / 'logs' / 'access.log'};
{paths}
{http_preamble}
    include {site};
}}
"""


class NginxProxy:
    def __init__(self, folder: Path, upstream: str):
        if not Path(NGINX).exists():
            raise AssertionError("nginx is missing: .ci/run installs nginx-light")
        self.folder = folder
        for sub in ("logs", "cache"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = folder / "site.conf"
        site.write_text(site_conf(self.port, upstream))
        self.conf = folder / "nginx.conf"
        self.conf.write_text(main_conf(folder, site))
        self.proc: subprocess.Popen | None = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([NGINX, "-t", "-p", str(self.folder), "-c", str(self.conf)],
                              capture_output=True, text=True, timeout=30)

    def start(self) -> NginxProxy:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.folder), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "stderr.log", "wb"))
        wait_for(self._listening, 15, message="nginx to listen")
        return self

    def _listening(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.error_log()
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def error_log(self) -> str:
        parts = []
        for name in ("stderr.log", "logs/error.log"):
            path = self.folder / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def access_log(self) -> str:
        path = self.folder / "logs" / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)  # graceful: finish open requests
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        deadline = time.monotonic() + 5
        while (self.folder / "nginx.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
