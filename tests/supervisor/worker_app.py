"""A Celery app for the supervisor's tests and bench: the project's configuration, trivial tasks.

Workers load it with `-A tests.supervisor.worker_app` (the manager's `worker_app`
argument), so supervision can be tested without the card engine. The tasks
leave marks in files so a test can tell how often a task started and finished.
"""
from __future__ import annotations

import os
import time

from app.celery_config import TASK_HEALTH, make_celery
from app.settings import load_settings

settings = load_settings()
celery = make_celery(settings)
app = celery


def _mark(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{text} {os.getpid()} {time.time():.3f}\n")


@celery.task(name=TASK_HEALTH, bind=True)
def health_check(self) -> dict:
    """The manager's canary where the broker has no broadcast (SQS)."""
    return {"ok": True, "node": self.request.hostname, "pid": os.getpid()}


@celery.task(name="sup.noop")
def noop(value=None):
    return value


@celery.task(name="sup.sleep", bind=True, acks_late=True)
def sleep(self, seconds: float, marks: str | None = None) -> dict:
    _mark(marks, "start")
    time.sleep(seconds)
    _mark(marks, "done")
    return {"node": self.request.hostname, "pid": os.getpid()}


@celery.task(name="sup.allocate", bind=True, acks_late=True)
def allocate(self, megabytes: int, seconds: float, marks: str | None = None) -> dict:
    _mark(marks, "start")
    block = bytearray(megabytes * 1024 * 1024)
    for offset in range(0, len(block), 4096):  # touch every page so it is resident
        block[offset] = 1
    time.sleep(seconds)
    _mark(marks, "done")
    return {"node": self.request.hostname, "size": len(block)}


@celery.task(name="sup.whoami", bind=True)
def whoami(self) -> str:
    return self.request.hostname

