"""The Celery application workers load: `celery -A celery_app worker`.

Configuration lives in `app.celery_config`; the work in `app.jobs.runner`. Each task here
is a thin wrapper: it names the job, forwards progress as task state, and turns the
runner's verdict into Celery's (retry with backoff for transient failures, a failed
task for bad input). Importing this module connects to nothing and starts nothing.
"""
from __future__ import annotations

import logging
import os
import time

from app.celery_config import (TASK_CALIBRATION, TASK_CLEANUP, TASK_GENERATE, TASK_HEALTH,
                               TASK_OFFSET, make_celery)
from app.jobs import runner
from app.jobs.cleanup import cleanup_expired
from app.jobs.holders import runner_name
from app.jobs.store import store_for
from app.settings import load_settings

log = logging.getLogger(__name__)

settings = load_settings()
celery = make_celery(settings)
app = celery  # `celery -A celery_app` finds either name


def _store():
    return store_for(settings.database_url)


def _run(task, job_id: str) -> dict:
    node = task.request.hostname or f"celery@{settings.node_name}"
    task_id = task.request.id

    def forward(fraction: float, message: str) -> None:
        if task_id:  # progress for Flower / result-backend readers
            task.update_state(task_id=task_id, state="PROGRESS",
                              meta={"job_id": job_id, "progress": fraction, "message": message})

    final_attempt = task.request.retries >= task.max_retries
    try:
        result = runner.run_job(settings, job_id, runner=runner_name(node),
                                worker_node=node, progress=forward, store=_store(),
                                retry_transient=not final_attempt)
    except runner.TransientJobError as exc:
        retry = task.retry(exc=exc, countdown=runner.retry_delay(task.request.retries),
                           throw=False)
        _store().mark_published(job_id)  # the retry message is in the broker now
        raise retry from None
    if result.get("status") == "failed" and not result.get("skipped"):
        # Marked failed in the store already; fail the task too, with the same message.
        raise runner.JobFailed(result.get("error") or "failed")
    return result


def _job_task(name: str):
    # `throws`: a failed job is an expected outcome, logged without a traceback.
    return celery.task(name=name, bind=True, max_retries=runner.TRANSIENT_RETRIES,
                       acks_late=True, throws=(runner.JobFailed,))


@_job_task(TASK_GENERATE)
def generate_sheets(self, job_id: str) -> dict:
    return _run(self, job_id)


@_job_task(TASK_OFFSET)
def offset_sheets(self, job_id: str) -> dict:
    return _run(self, job_id)


@_job_task(TASK_CALIBRATION)
def calibration_sheet(self, job_id: str) -> dict:
    return _run(self, job_id)


@celery.task(name=TASK_HEALTH, bind=True)
def health_check(self) -> dict:
    return {"ok": True, "node": self.request.hostname, "pid": os.getpid(), "time": time.time()}


@celery.task(name=TASK_CLEANUP, bind=True, max_retries=2)
def cleanup_outputs(self) -> dict:
    return cleanup_expired(settings, _store())
