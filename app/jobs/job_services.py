"""The per-process job services and how Flask code reaches them.

The composition root (`app.runtime`) builds them on first use and hands `app.jobs.api`
a provider; code running in a request asks `services(app)`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # Celery workers import app.jobs without Flask or the dispatcher
    from flask import Flask

    from app.jobs.dispatch import Dispatcher
    from app.jobs.fallback import ThreadFallback
    from app.jobs.store import JobStore
    from app.broker import BrokerMonitor

SERVICES_KEY = "scm.jobs"
ServicesProvider = Callable[[], "JobServices"]


@dataclass
class JobServices:
    store: JobStore
    dispatcher: Dispatcher
    fallback: ThreadFallback
    broker_monitor: BrokerMonitor | None

    def close(self, wait: float | None = None) -> None:
        """Stop the thread pool (journaled jobs resume at the next boot), the dispatcher's
        inspector thread and its Celery client (broker connections)."""
        self.fallback.shutdown(wait=wait)
        self.dispatcher.close()


def provide_services(app: Flask, provider: ServicesProvider) -> None:
    app.extensions[SERVICES_KEY] = provider


def services(app: Flask) -> JobServices:
    """This process's job services (built on first use by the composition root)."""
    return app.extensions[SERVICES_KEY]()
