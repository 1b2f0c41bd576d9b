"""The slow-client front for serving without a proxy (see app/front/guard.py for why).

`start_with_celery.py` runs it (`http_child`) as a child next to gunicorn when
`front_enabled`:
the front listens on HOST:PORT, gunicorn on a private Unix socket in the instance's
run folder (PROXY protocol carries the client address). Behind nginx (TRUSTED_PROXIES
> 0) it is off by default: nginx enforces the same deadlines and caps
(deploy/nginx.conf) and the front would count every client as nginx's one address.
"""
from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.runtime.http import GunicornChild

log = logging.getLogger(__name__)

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


class GunicornBehindFront(GunicornChild):
    """GunicornChild on the private socket, with the front as its sibling: same surface."""

    def __init__(self, settings, conf_path: Path, *, pythonpath: Path):
        super().__init__(settings, conf_path, pythonpath=pythonpath)
        self.front: FrontProcess | None = None

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env[UPSTREAM_ENV] = str(upstream_socket(self.settings))
        return env

    def start(self) -> None:
        self.front = FrontProcess(self.settings, self.environment())
        self.front.start()
        super().start()
        # start() promises a listening server: gunicorn's readiness says nothing of the
        # front's, and systemd's READY=1 follows this call.
        self._wait_front_listening(self.front, timeout=30.0)

    def _wait_front_listening(self, front: FrontProcess, timeout: float) -> None:
        host = self.settings.HOST
        host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if front.poll() is not None:
                raise RuntimeError(f"the HTTP front exited with code {front.poll()}")
            try:
                socket.create_connection((host, self.settings.PORT), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the HTTP front did not listen on {host}:{self.settings.PORT} "
                           f"within {timeout:.0f} s")

    def run_until(self, stop: threading.Event) -> int:
        proc, front = self.started(), self.front
        if front is None:
            raise RuntimeError("the HTTP front has not been started")
        while not stop.wait(0.5):
            if proc.poll() is not None:
                log.error("gunicorn exited with code %s; stopping", proc.returncode)
                return 1
            if front.poll() is not None:
                log.error("the HTTP front exited with code %s; stopping", front.poll())
                return 1
        return 0

    def close(self) -> None:
        if self.front is not None:  # stop accepting first; requests in flight finish
            self.front.stop(timeout=self.settings.GUNICORN_TIMEOUT + 5)
        super().close()


def http_child(settings, conf_path: Path, *, pythonpath: Path) -> GunicornChild:
    cls = GunicornBehindFront if front_enabled(settings) else GunicornChild
    return cls(settings, conf_path, pythonpath=pythonpath)


__all__ = [
    "UPSTREAM_ENV",
    "FrontProcess",
    "GunicornBehindFront",
    "front_enabled",
    "http_child",
    "upstream_socket",
]
