"""Development server with the Celery worker manager and a code reloader.

    python start_dev_with_celery.py [--no-reload]

Debug logging; START_CELERY_WORKER defaults to true here.

Reloader-safe: a small watcher process holds the listening socket and runs the app in a
child; on a code change the child exits (code 3) after stopping its workers warm and the
watcher starts a fresh one. Only that child (or the single process with --no-reload) runs
the manager, so one set of workers exists at any time. Werkzeug's own watcher is not used
because it SIGKILLs its child on SIGTERM, which would skip the warm stop.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys

from app import create_app
from app.db import engine_or_exit
from app.runtime import DevServer, Entry, ReloadingDevServer, hosting_for, serve
from app.settings import load_settings_or_exit, with_workers_by_default
from app.supervisor.shim import set_parent_death_signal

RELOAD_EXIT_CODE = 3  # werkzeug's reloader child exits with 3 to ask for a restart


def _is_reloader_child() -> bool:
    return os.environ.get("WERKZEUG_RUN_MAIN") == "true"


def _die_with_watcher() -> None:
    # If the watcher is killed outright, this child still stops (warm, via SIGTERM).
    if sys.platform.startswith("linux"):
        set_parent_death_signal(signal.SIGTERM)


def watch(settings) -> int:
    """Keep the port open across reloads; forward a stop to the child and wait for it."""
    family = socket.AF_INET6 if ":" in settings.HOST else socket.AF_INET
    listener = socket.create_server((settings.HOST, settings.PORT), family=family)
    listener.set_inheritable(True)
    env = dict(os.environ, WERKZEUG_RUN_MAIN="true",
               WERKZEUG_SERVER_FD=str(listener.fileno()))
    state = {"stopping": False, "child": None}

    def stop(_signum, _frame):
        state["stopping"] = True
        child = state["child"]
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger(__name__).info("serving http://%s:%d (reloading on code changes)",
                                     settings.HOST, settings.PORT)
    try:
        while True:
            state["child"] = subprocess.Popen([sys.executable] + sys.argv, env=env,
                                              pass_fds=(listener.fileno(),))
            code = state["child"].wait()
            if state["stopping"]:
                return 0
            if code != RELOAD_EXIT_CODE:
                return code
    finally:
        listener.close()


def run_app(settings, *, use_reloader: bool) -> int:
    engine_or_exit(settings.database_url)  # one clear line when it cannot be reached
    app = create_app(settings)
    if settings.START_CELERY_WORKER and use_reloader:
        _die_with_watcher()
    http = ReloadingDevServer(app, settings) if use_reloader \
        else DevServer(app, settings, debug=True)
    # A code change ends the child with SystemExit(3) after serve stopped the workers.
    return serve(app, hosting_for(Entry.DEV, settings), http)


def main(argv: list[str]) -> int:
    use_reloader = "--no-reload" not in argv
    settings = with_workers_by_default(load_settings_or_exit(LOG_LEVEL="DEBUG"))
    logging.basicConfig(level=logging.DEBUG,
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    if use_reloader and not _is_reloader_child():
        return watch(settings)
    return run_app(settings, use_reloader=use_reloader)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
