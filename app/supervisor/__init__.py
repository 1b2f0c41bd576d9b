"""The Celery worker supervisor: wiring for Flask (admin API, the per-process handle)."""
from __future__ import annotations

import logging

from flask import Flask

from app.supervisor.control import ManagerHandle

__all__ = ["init_app", "manager_handle", "host_manager"]

HANDLE_KEY = "scm.manager"
log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the admin API. Builds the handle; starts nothing (the entry points do)."""
    from app.supervisor.api import HealthProbe, bp, register_error_handlers

    handle = app.extensions[HANDLE_KEY] = ManagerHandle(app.config["SETTINGS"])
    app.register_blueprint(bp)
    register_error_handlers(app)
    app.wsgi_app = HealthProbe(app.wsgi_app, handle.health)


def manager_handle(app: Flask) -> ManagerHandle:
    """This process's handle on the instance's one manager: owner, proxy or none."""
    return app.extensions[HANDLE_KEY]


def host_manager(app: Flask, *, takeover: bool = True, on_tick=None) -> bool:
    """Try to run the manager in this process, with the jobs reconciler beside it.

    True when this process now owns it; False when another process does (this one then
    reaches it through the socket, and with `takeover` replaces it if it dies).
    Entry points call this; `create_app()` never does.

    The periodic reconciler goes through `app.jobs.start_reconciler`, i.e. through the
    same `run/jobs-reconciler.lock` as every other process, so exactly one sweep runs per
    instance folder. The manager's `on_worker_lost` always runs here, in the process that
    sees the workers die: it uses this process's reconciler, or - when another process
    already holds the lock and sweeps - a standby reconciler that never sweeps (see
    `app.jobs.worker_lost_hook`).
    """
    handle = manager_handle(app)

    def factory(settings):
        from app.jobs import worker_lost_hook
        from app.supervisor.manager import CeleryWorkerManager
        # [deploy] on_tick: the systemd watchdog ping from the manager's loop.
        return CeleryWorkerManager(settings, on_worker_lost=worker_lost_hook(app),
                                   on_tick=on_tick)

    def opened(_manager):
        # Journaled thread-mode jobs of a crashed run first, then the periodic sweep
        # (both inside start_reconciler), unless another process already runs it.
        from app.jobs import start_reconciler
        if start_reconciler(app) is None:
            log.info("another process runs the jobs reconciler for this instance")

    def closing():
        from app.jobs import stop_reconciler
        stop_reconciler(app)

    return handle.acquire(factory, on_opened=opened, on_closing=closing, takeover=takeover)
