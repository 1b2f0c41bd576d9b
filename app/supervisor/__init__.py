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


def host_manager(app: Flask, *, takeover: bool = True) -> bool:
    """Try to run the manager in this process, with the jobs reconciler beside it.

    True when this process now owns it; False when another process does (this one then
    reaches it through the socket, and with `takeover` replaces it if it dies).
    Entry points call this; `create_app()` never does.
    """
    handle = manager_handle(app)
    services: dict = {}

    def factory(settings):
        from app.supervisor.manager import CeleryWorkerManager
        reconciler = _make_reconciler(app)
        services["reconciler"] = reconciler
        return CeleryWorkerManager(settings, on_worker_lost=reconciler.redispatch_worker_jobs)

    def opened(_manager):
        # Journaled thread-mode jobs of a crashed run first, then the periodic sweep.
        services["reconciler"].resume_journal()
        services["reconciler"].start()

    def closing():
        reconciler = services.pop("reconciler", None)
        if reconciler is not None:
            reconciler.stop()

    return handle.acquire(factory, on_opened=opened, on_closing=closing, takeover=takeover)


def _make_reconciler(app: Flask):
    from app.jobs import services as job_services
    from app.jobs.reconciler import Reconciler

    jobs = job_services(app)
    return Reconciler(app.config["SETTINGS"], jobs.store, jobs.dispatcher)
