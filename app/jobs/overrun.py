"""Jobs that broke their worker's limit fail for it, and are not sent to the next worker.

The manager tells us (before the worker's death re-dispatches what it held) which worker
went over its memory limit and which of its processes used most. The job running in that
process is failed with the reason; a job of that worker running elsewhere in its pool is
left alone (its run is re-dispatched as usual if the restart kills it). The Celery
message of a failed job may still be redelivered: its claim then answers `done`.
"""
from __future__ import annotations

import logging

from app.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


def jobs_to_blame(running: list[Job], pid: int | None) -> list[Job]:
    """The jobs running in process `pid` (runner names end in `/<pid>`); all of them
    when the pid is unknown or runs none (then every job there may have done it)."""
    if pid is not None:
        in_pid = [job for job in running if (job.worker or "").endswith(f"/{pid}")]
        if in_pid:
            return in_pid
    return running


def fail_overrun_jobs(store: JobStore, worker_name: str, pid: int | None,
                      reason: str) -> list[str]:
    """Fail the jobs of `worker_name` running in `pid` with `reason`; their ids."""
    failed = []
    for job in jobs_to_blame(store.running_on(worker_name), pid):
        if store.break_lease(job.id, lease=job.lease, fail=reason):
            failed.append(job.id)
    if failed:
        log.warning("%s: %s; failed job(s) %s", worker_name, reason, failed)
    return failed
