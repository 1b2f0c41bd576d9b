"""Jobs: records (store), where they run (dispatch, fallback), how they run (runner),
what brings lost ones back (reconciler), and the HTTP API (api).

`init_app` only registers the blueprint; `services(app)` builds the per-process store,
dispatcher and thread pool lazily, on first use, so `create_app()` starts nothing.
"""
from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily: Celery workers import app.jobs without Flask wiring
    from flask import Flask

    from app.jobs.dispatch import Dispatcher
    from app.jobs.fallback import ThreadFallback
    from app.jobs.store import JobStore

__all__ = ["init_app", "services", "JobServices", "start_reconciler", "stop_reconciler"]

SERVICES_KEY = "scm.jobs"
RECONCILER_KEY = "scm.jobs.reconciler"
_build_lock = threading.Lock()


@dataclass
class JobServices:
    store: "JobStore"
    dispatcher: "Dispatcher"
    fallback: "ThreadFallback"
    broker_monitor: object | None


def init_app(app: "Flask") -> None:
    from app.jobs.api import bp

    app.register_blueprint(bp)


def services(app: "Flask") -> JobServices:
    """This process's job services, built on first use (nothing starts before then)."""
    built = app.extensions.get(SERVICES_KEY)
    if built is not None:
        return built
    with _build_lock:
        built = app.extensions.get(SERVICES_KEY)
        if built is None:
            built = app.extensions[SERVICES_KEY] = _build(app)
        return built


def _build(app: "Flask") -> JobServices:
    from app.jobs.dispatch import Dispatcher
    from app.jobs.fallback import ThreadFallback
    from app.jobs.store import store_for

    settings = app.config["SETTINGS"]
    store = store_for(settings.database_path)
    fallback = ThreadFallback(settings, store)
    monitor = None
    if settings.broker_url:
        from app.supervisor.broker import BrokerMonitor
        monitor = BrokerMonitor(settings.broker_url, timeout=0.5)
    dispatcher = Dispatcher(settings, store, fallback, broker_monitor=monitor,
                            worker_available=_worker_available(app))
    return JobServices(store=store, dispatcher=dispatcher, fallback=fallback,
                       broker_monitor=monitor)


def _worker_available(app: "Flask"):
    """The manager's answer to "can a worker take this queue?", through the per-process
    handle (owner, socket proxy, or - with no manager anywhere - the broker's state)."""
    try:
        from app.supervisor import manager_handle
        handle = manager_handle(app)
    except (ImportError, KeyError):
        return None
    return handle.worker_available


def start_reconciler(app: "Flask"):
    """Run the jobs reconciler in this process unless another process of the instance does.

    For processes that do not host the worker manager (START_CELERY_WORKER=false: the
    manager's host runs its own reconciler). A lock file, `run/jobs-reconciler.lock`,
    picks one process per instance folder, however many gunicorn workers call this.
    Resumes the thread journal of a previous run first. Returns the Reconciler, or None
    when another process already runs one.
    """
    from app.jobs.reconciler import Reconciler

    existing = app.extensions.get(RECONCILER_KEY)
    if existing is not None:
        return existing[0]
    settings = app.config["SETTINGS"]
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.run_dir / "jobs-reconciler.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    jobs = services(app)
    reconciler = Reconciler(settings, jobs.store, jobs.dispatcher)
    app.extensions[RECONCILER_KEY] = (reconciler, fd)
    reconciler.resume_journal()
    reconciler.start()
    return reconciler


def stop_reconciler(app: "Flask") -> None:
    entry = app.extensions.pop(RECONCILER_KEY, None)
    if entry is not None:
        reconciler, fd = entry
        reconciler.stop()
        os.close(fd)  # drops the lock
