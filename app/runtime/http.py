"""The HTTP side `serve` runs: Werkzeug's development server, with or without its code
reloader, or gunicorn as a child process. Each listens once `start()` returns, serves
until `run_until(stop)` returns, and stops serving in `close()`."""
from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Protocol

from flask import Flask
from werkzeug.debug import DebuggedApplication
from werkzeug.serving import BaseWSGIServer, make_server

from app.settings import Settings

log = logging.getLogger(__name__)
READY_FD_ENV = "SCM_READY_FD"  # gunicorn.conf.py's when_ready writes one byte to it
GUNICORN_READY_TIMEOUT = 60.0


class HttpServer(Protocol):
    def start(self) -> None: ...
    def run_until(self, stop: threading.Event) -> int: ...
    def interrupt(self) -> None: ...
    def close(self) -> None: ...


class DevServer:
    """Werkzeug's threaded server (what Flask's `app.run` starts), from a thread."""

    def __init__(self, app: Flask, settings: Settings, *, debug: bool = False):
        self.app = app
        self.settings = settings
        self.debug = debug
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.debug:  # as app.run(debug=True): tracebacks in the browser
            self.app.debug = True
        wsgi = DebuggedApplication(self.app, evalex=True) if self.debug else self.app
        server = self._server = make_server(self.settings.HOST, self.settings.PORT, wsgi,
                                            threaded=True)
        server.log_startup()
        self._thread = threading.Thread(target=server.serve_forever, name="http",
                                        daemon=True)
        self._thread.start()

    def run_until(self, stop: threading.Event) -> int:
        while not stop.wait(0.5):
            pass
        return 0

    def interrupt(self) -> None:
        pass  # run_until watches the stop event

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class ReloadingDevServer:
    """Werkzeug's server under its code reloader, in the child of start_dev_with_celery's
    watcher (which holds the listening socket). A code change ends `run_until` with
    SystemExit(3), the reloader's "restart me"; the watcher starts a fresh child."""

    def __init__(self, app: Flask, settings: Settings):
        self.app = app
        self.settings = settings
        self._running = False

    def start(self) -> None:
        pass  # the watcher's socket listens already

    def run_until(self, stop: threading.Event) -> int:
        self._running = True
        try:
            self.app.run(host=self.settings.HOST, port=self.settings.PORT, debug=True,
                         use_reloader=True, threaded=True)
        finally:
            self._running = False
        return 0

    def interrupt(self) -> None:
        # The reloader owns the main thread; only an exception there ends it.
        if self._running:
            sys.exit(0)

    def close(self) -> None:
        pass


class GunicornChild:
    """gunicorn (with gunicorn.conf.py) as a child process; SIGHUP reloads its workers."""

    def __init__(self, settings: Settings, conf_path: Path, *, pythonpath: Path):
        self.settings = settings
        self.conf_path = conf_path
        self.pythonpath = pythonpath
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", str(self.conf_path)]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.pythonpath),
                                                          env.get("PYTHONPATH")]))
        # The child resolves the same instance folder whatever its working directory.
        env["INSTANCE_PATH"] = str(self.settings.INSTANCE_PATH)
        env["SCM_MANAGER_IN_PARENT"] = "1"
        env["SCM_PARENT_PID"] = str(os.getpid())
        return env

    def start(self) -> None:
        read_end, write_end = os.pipe()
        try:
            proc = self.proc = subprocess.Popen(
                self.command(), env={**self.environment(), READY_FD_ENV: str(write_end)},
                pass_fds=(write_end,))
        finally:
            os.close(write_end)
        # SIGHUP: gunicorn reloads its workers gracefully (new code, same Celery workers).
        signal.signal(signal.SIGHUP, lambda *_: proc.send_signal(signal.SIGHUP))
        try:
            self._wait_ready(read_end)
        finally:
            os.close(read_end)
        log.info("gunicorn (pid %d) serving http://%s:%d", proc.pid,
                 self.settings.HOST, self.settings.PORT)

    def _wait_ready(self, read_end: int) -> None:
        deadline = time.monotonic() + GUNICORN_READY_TIMEOUT
        proc = self.started()
        while proc.poll() is None and time.monotonic() < deadline:
            readable, _, _ = select.select([read_end], [], [], 0.5)
            if readable:
                return  # its byte, or EOF: it exited (run_until reports that)

    def run_until(self, stop: threading.Event) -> int:
        proc = self.started()
        while not stop.wait(0.5):
            if proc.poll() is not None:
                log.error("gunicorn exited with code %s; stopping", proc.returncode)
                return 1
        return 0

    def started(self) -> subprocess.Popen:
        """The gunicorn child start() made."""
        if self.proc is None:
            raise RuntimeError("gunicorn has not been started")
        return self.proc

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        proc, timeout = self.proc, max(30, self.settings.CELERY_STOP_TIMEOUT + 20)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # graceful: finish in-flight requests
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("gunicorn did not stop in %.0f s; killing it", timeout)
            proc.kill()
            proc.wait(10)
