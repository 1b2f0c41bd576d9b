"""The slow-client front for serving without a proxy (see app/front/guard.py for why).

`start_with_celery.py` runs it as a child next to gunicorn when `front_enabled`:
the front listens on HOST:PORT, gunicorn on a private Unix socket in the instance's
run folder (PROXY protocol carries the client address). Behind nginx (TRUSTED_PROXIES
> 0) it is off by default: nginx enforces the same deadlines and caps
(deploy/nginx.conf) and the front would count every client as nginx's one address.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

# gunicorn.conf.py binds here (and speaks PROXY protocol) when this is set.
UPSTREAM_ENV = "SCM_FRONT_UPSTREAM"


def front_enabled(settings) -> bool:
    if settings.HTTP_FRONT == "auto":
        return settings.TRUSTED_PROXIES == 0
    return settings.HTTP_FRONT == "on"


def upstream_socket(settings) -> Path:
    return settings.socket_path("gunicorn.sock")


class FrontProcess:
    """`python -m app.front` as a child process: start, poll, stop."""

    def __init__(self, settings, env: dict[str, str]):
        self.settings = settings
        self.env = dict(env)
        self.env[UPSTREAM_ENV] = str(upstream_socket(settings))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "app.front"], env=self.env)

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # in-flight requests finish
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


__all__ = ["FrontProcess", "UPSTREAM_ENV", "front_enabled", "upstream_socket"]
