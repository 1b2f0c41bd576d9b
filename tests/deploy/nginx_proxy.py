"""A real nginx running deploy/nginx.conf, moved to loopback ports and a temp folder."""
from __future__ import annotations

import getpass
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.deploy.project_facts import DEPLOY

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def templated_conf(folder: Path, listen_port: int, upstream: str) -> str:
    """deploy/nginx.conf with only the host-specific parts changed: where it listens,
    where the app is, and the folders for its pid, logs and temp files."""
    text = (DEPLOY / "nginx.conf").read_text()
    replacements = [
        (r"(?m)^user \S+;", f"user {getpass.getuser()};"),
        (r"/var/run/nginx\.pid", str(folder / "nginx.pid")),
        (r"/var/log/nginx", str(folder / "logs")),
        (r"/var/cache/nginx", str(folder / "cache")),
        (r"listen 80;", f"listen 127.0.0.1:{listen_port};"),
        (r"server app:5000", f"server {upstream}"),
    ]
    for pattern, value in replacements:
        text, count = re.subn(pattern, value, text)
        assert count, f"deploy/nginx.conf no longer has {pattern!r}"
    return text


class NginxProxy:
    def __init__(self, folder: Path, upstream: str):
        if not Path(NGINX).exists():
            raise AssertionError("nginx is missing: .ci/run installs nginx-light")
        self.folder = folder
        for sub in ("logs", "cache"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = folder / "nginx.conf"
        self.conf.write_text(templated_conf(folder, self.port, upstream))
        self.proc: subprocess.Popen | None = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([NGINX, "-t", "-p", str(self.folder), "-c", str(self.conf)],
                              capture_output=True, text=True, timeout=30)

    def start(self) -> "NginxProxy":
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
