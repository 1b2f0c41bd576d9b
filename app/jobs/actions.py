"""Cancelling and deleting jobs.

Cancel uses the lease protocol of the store as the cancel flag: a queued job is failed
before anyone claims it (a worker that receives it later finds it finished and skips it);
a running job has its lease broken with a "cancelled" failure, so the run's next progress
report - the card engine reports per image and per page - raises LeaseLost and stops,
in a Celery worker and in the thread fallback alike, and its final write is refused.
On Celery the task is also revoked (with terminate for a running one), so a worker stops
at once instead of at its next report.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from app.jobs.names import FINISHED
from app.jobs.store import Job, JobStore
from app.jobs.thumbnails import thumbnail_paths
from app.settings import Settings

log = logging.getLogger(__name__)

CANCELLED = "cancelled by its owner"


def is_cancelled(job: Job) -> bool:
    return job.status == "failed" and job.error == CANCELLED


class JobActions:
    """Cancel and delete, with the revoke behind `revoke(task_id, terminate)`."""

    def __init__(self, settings: Settings, store: JobStore, revoke=None):
        self.settings = settings
        self.store = store
        self.revoke = revoke

    def cancel(self, job: Job) -> bool:
        """Stop a queued or running job. False when it had finished already."""
        for _ in range(3):  # the job may move from queued to running under us
            if job.status in FINISHED:
                return False
            if job.status == "queued":
                stopped = self.store.fail(job.id, None, CANCELLED)
            else:
                stopped = self.store.break_lease(job.id, lease=job.lease, fail=CANCELLED)
            if stopped:
                self._revoke(job, terminate=job.status == "running")
                return True
            current = self.store.get(job.id)
            if current is None:
                return False
            job = current
        return False

    def delete(self, job: Job) -> None:
        """Cancel if needed, then remove the job's files and its record."""
        self.cancel(job)
        for path in self._files(job):
            _remove(path)
        self.store.delete([job.id])

    def _files(self, job: Job) -> list[Path]:
        files = [self.settings.outputs_dir / f"{job.id}.pdf",
                 self.settings.uploads_dir / job.id,
                 *thumbnail_paths(self.settings, job.id)]
        if job.output_path:
            files.append(self.settings.in_storage(job.output_path))
        return files

    def _revoke(self, job: Job, *, terminate: bool) -> None:
        if job.mode != "celery" or not job.task_id or self.revoke is None:
            return
        try:
            self.revoke(job.task_id, terminate)
        except Exception as exc:  # the store already says cancelled; the run stops anyway
            log.warning("revoking task %s of job %s failed: %s", job.task_id, job.id, exc)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def celery_revoker(dispatcher):
    """`revoke(task_id, terminate)` through the dispatcher's Celery client."""
    def revoke(task_id: str, terminate: bool) -> None:
        celery = dispatcher.celery
        if celery is not None:
            celery.control.revoke(task_id, terminate=terminate, signal="SIGTERM")
    return revoke
