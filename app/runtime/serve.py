"""`serve`: the one start and stop sequence of every entry point that owns its loop."""
from __future__ import annotations

import logging
import signal
import threading

from flask import Flask

from app.auth.setup import announce_first_run
from app.runtime.hosting import Hosting
from app.runtime.http import HttpServer
from app.runtime.lifecycle import Notifier, NullNotifier
from app.runtime.services import runtime_of
from app.runtime.status_reporter import StatusReporter

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(app: Flask, hosting: Hosting, http: HttpServer | None = None, *,
          notifier: Notifier | None = None) -> int:
    """Start the manager and reconciler as `hosting` says, then HTTP (none: a worker-only
    host), serve until SIGTERM or SIGINT, and stop everything. Returns the exit code:
    0 after a stop signal, 1 when the HTTP server died on its own."""
    notifier = notifier or NullNotifier()
    runtime = runtime_of(app)
    stop = threading.Event()

    def on_stop_signal(_signum, _frame):
        stop.set()
        if http is not None:
            http.interrupt()

    previous = {signum: signal.signal(signum, on_stop_signal) for signum in STOP_SIGNALS}
    reporter: StatusReporter | None = None
    try:
        runtime.start(hosting)
        if stop.is_set():
            return 0
        if http is not None:
            http.start()
            announce_first_run(app)  # the page's URL, and the setup link while no user exists
        reporter = StatusReporter(runtime.handle, notifier)
        notifier.ready(reporter.last)
        reporter.start()
        if http is None:
            while not stop.wait(0.5):
                pass
            return 0
        return http.run_until(stop)
    finally:
        notifier.stopping()
        if reporter is not None:
            reporter.stop()
        if http is not None:
            http.close()
        runtime.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        log.info("stopped")
