"""gunicorn settings for Silhouette Card Maker.

    gunicorn -c gunicorn.conf.py            (start_with_celery.py runs exactly this)

Sizes and timeouts come from Settings (GUNICORN_WORKERS/THREADS/TIMEOUT, HOST, PORT);
command-line flags still win (`gunicorn -c gunicorn.conf.py -w 3`). Extra gunicorn flags
can go in GUNICORN_CMD_ARGS, e.g. `--access-logfile -`.

The manager: when gunicorn is run directly with START_CELERY_WORKER=true, every worker
tries the instance's manager lock after it boots; exactly one wins and runs the Celery
workers, the others reach it through the socket and take over if it dies. Under
start_with_celery.py the parent process owns the manager and the workers never try.
"""
from __future__ import annotations

import os
import signal
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))
if _ROOT not in sys.path:  # `gunicorn -c /path/to/gunicorn.conf.py` from another directory
    sys.path.insert(0, _ROOT)

from app.runtime import Entry, hosting_for, runtime_of  # noqa: E402
from app.runtime.http import READY_FD_ENV  # noqa: E402
from app.settings import load_settings  # noqa: E402
from app.supervisor.shim import set_parent_death_signal  # noqa: E402

_settings = load_settings()
# Set by start_with_celery.py for its gunicorn child: the parent hosts the manager.
_MANAGER_IN_PARENT = os.environ.get("SCM_MANAGER_IN_PARENT") == "1"
_PARENT_PID = os.environ.get("SCM_PARENT_PID")
_ENTRY = Entry.GUNICORN_CHILD if _MANAGER_IN_PARENT else Entry.GUNICORN

wsgi_app = "app:create_app()"
_host = _settings.HOST
bind = [f"[{_host}]:{_settings.PORT}" if ":" in _host else f"{_host}:{_settings.PORT}"]
# Behind start_with_celery.py's slow-client front (app/front): a private Unix socket, and
# the client's address from the front's PROXY protocol line. gthread threads then only
# ever receive complete requests, so a slow client cannot hold one.
_FRONT_UPSTREAM = os.environ.get("SCM_FRONT_UPSTREAM")
if _FRONT_UPSTREAM:
    bind = [f"unix:{_FRONT_UPSTREAM}"]
    proxy_protocol = "v1"
    proxy_allow_ips = "127.0.0.1,::1"  # TCP peers only; the Unix socket is always allowed
workers = _settings.GUNICORN_WORKERS
worker_class = "gthread"
threads = _settings.GUNICORN_THREADS
timeout = _settings.GUNICORN_TIMEOUT
# The worker that hosts the manager stops the Celery workers warm on exit: give it the
# Celery stop timeout before gunicorn's SIGKILL.
graceful_timeout = int(max(30, _settings.CELERY_STOP_TIMEOUT + 15))
keepalive = 5
# Uploads stream through; large bodies are limited by Flask (MAX_UPLOAD_MB).
limit_request_line = 8190
forwarded_allow_ips = "127.0.0.1"
# Everything gunicorn creates (worker heartbeat files, a Unix socket) is private.
umask = 0o077
proc_name = "silhouette-card-maker"
# gunicorn's runtime control socket defaults to one per-user path shared by every gunicorn
# on the machine; this app is steered through its own API, so it stays off.
control_socket_disable = True

errorlog = "-"
accesslog = None  # off by default: it costs throughput; enable with --access-logfile -
loglevel = _settings.LOG_LEVEL.lower()
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                   "stream": "ext://sys.stderr"},
    },
    # The application's loggers propagate to root; gunicorn's own keep their names.
    "root": {"level": _settings.LOG_LEVEL.upper(), "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": _settings.LOG_LEVEL.upper(), "handlers": ["stderr"],
                           "propagate": False},
    },
}


def _die_with_parent(parent: int) -> None:
    """The master exits when start_with_celery.py dies, even by SIGKILL (no orphans)."""
    if not sys.platform.startswith("linux"):
        return
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def on_starting(server):
    if _MANAGER_IN_PARENT and _PARENT_PID:
        _die_with_parent(int(_PARENT_PID))


def when_ready(server):
    # Tell start_with_celery.py that HTTP listens (it then reports "ready").
    ready_fd = os.environ.pop(READY_FD_ENV, None)
    if ready_fd is not None:
        os.write(int(ready_fd), b"1")
        os.close(int(ready_fd))


def post_worker_init(worker):
    if runtime_of(worker.wsgi).start(hosting_for(_ENTRY, _settings)):
        worker.log.info("worker %s hosts the Celery worker manager", os.getpid())


def worker_exit(server, worker):
    # Runs in the exiting worker: if it hosts the manager, stop the Celery workers warm now
    # (the parent-death signal would kill them hard) and free the lock for a successor;
    # then the reconciler, thread pool and Celery client (thread jobs stay journaled).
    app = getattr(worker, "wsgi", None)
    if app is None or not hasattr(app, "extensions"):
        return
    runtime_of(app).close()
