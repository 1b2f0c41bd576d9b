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

__all__ = ["init_app", "services", "JobServices", "start_reconciler", "stop_reconciler",
           "worker_lost_hook", "fail_purged_jobs", "close_services"]

SERVICES_KEY = "scm.jobs"
RECONCILER_KEY = "scm.jobs.reconciler"
STANDBY_KEY = "scm.jobs.reconciler.standby"
_build_lock = threading.Lock()
_reconciler_lock = threading.RLock()


@dataclass
class JobServices:
    store: "JobStore"
    dispatcher: "Dispatcher"
    fallback: "ThreadFallback"
    broker_monitor: object | None


    def close(self, wait: float | None = None) -> None:
        """Tear down: stop the thread pool (journaled jobs resume at the next boot), the
        dispatcher's inspector thread and its Celery client (broker connections)."""
        self.fallback.shutdown(wait=wait)
        self.dispatcher.close()


def init_app(app: "Flask") -> None:
    from app.jobs.actions_api import bp as actions_bp
    from app.jobs.api import bp

    app.register_blueprint(bp)
    app.register_blueprint(actions_bp)


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


def close_services(app: "Flask", wait: float | None = None) -> None:
    """Tear down this process's job services, if they were built (next use rebuilds)."""
    stop_reconciler(app)
    with _build_lock:
        built = app.extensions.pop(SERVICES_KEY, None)
    if built is not None:
        built.close(wait=wait)


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

    Every entry point goes through here, the manager's host included (its `on_opened`
    hook, see `app.supervisor.host_manager`). A lock file, `run/jobs-reconciler.lock`,
    picks one process per instance folder, however many gunicorn workers call this, so
    exactly one periodic sweep runs per instance. Resumes the thread journal of a previous
    run first. Returns the Reconciler, or None when another process already runs one.
    """
    from app.jobs.reconciler import Reconciler

    with _reconciler_lock:
        existing = app.extensions.get(RECONCILER_KEY)
        if existing is not None:
            return existing[0]
        settings = app.config["SETTINGS"]
        settings.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(settings.run_dir / "jobs-reconciler.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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
    with _reconciler_lock:
        entry = app.extensions.pop(RECONCILER_KEY, None)
        standby = app.extensions.pop(STANDBY_KEY, None)
    if entry is not None:
        reconciler, fd = entry
        reconciler.stop()
        os.close(fd)  # drops the lock
    if standby is not None:
        standby.stop()


def _hook_reconciler(app: "Flask"):
    """The reconciler whose `redispatch_worker_jobs` serves this process's manager: the
    periodic one when this process runs it, else a standby that never sweeps (another
    process of the instance holds the lock and sweeps; the worker-lost hook still has to
    run here, where the manager sees its workers die). Re-dispatching from two processes
    is safe: every change is a compare-and-set in the store (see app.jobs.reconciler)."""
    from app.jobs.reconciler import Reconciler

    with _reconciler_lock:
        entry = app.extensions.get(RECONCILER_KEY)
        if entry is not None:
            return entry[0]
        standby = app.extensions.get(STANDBY_KEY)
        if standby is None:
            jobs = services(app)
            standby = app.extensions[STANDBY_KEY] = Reconciler(
                app.config["SETTINGS"], jobs.store, jobs.dispatcher)
        return standby


def worker_lost_hook(app: "Flask"):
    """`on_worker_lost` for a manager hosted in this process. Resolved at call time, so
    it follows the reconciler started (or not) after the manager was built."""
    def on_worker_lost(worker_name: str, queue: str | None = None, **details):
        return _hook_reconciler(app).redispatch_worker_jobs(worker_name, queue, **details)
    return on_worker_lost


def fail_purged_jobs(app: "Flask", queues, *, purge_started: float,
                     purge_finished: float) -> dict[str, int]:
    """After a successful broker purge of `queues`: fail the jobs whose messages it
    removed ("purged by an administrator"), so no reconciler publishes them again.
    Returns {queue: number of jobs failed}."""
    queues = list(queues)
    jobs = services(app)
    if not any(jobs.store.queued_celery(published_before=purge_finished, queue=name)
               for name in queues):
        return {name: 0 for name in queues}  # nothing to look up in the broker
    return _hook_reconciler(app).fail_purged(queues, purge_started=purge_started,
                                             purge_finished=purge_finished)
