"""Remove outputs and uploads older than OUTPUT_RETENTION_HOURS.

Works on STORAGE_DIR (uploads/, outputs/), which hosts share: whichever host runs it
decides from the shared job store, so it never removes another host's live files.
Called by the `cleanup_outputs` Celery task and by the reconciler's periodic tick.
Never touches the files of a job that is still queued or running.

The reconciler host also expires the result backend's rows (`expire_results`): Celery's
own `celery.backend_cleanup` needs celery beat, which this deployment does not run.
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from app.jobs.store import JobStore
from app.settings import Settings

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"
# Job records themselves are kept longer than their files, so a user can still see
# what happened ("expired") for a while.
RECORD_RETENTION_FACTOR = 7


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cleanup: could not remove %s: %s", path, exc)
        return False


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def cleanup_expired(settings: Settings, store: JobStore, *, now: float | None = None) -> dict:
    """Delete expired outputs/uploads and orphans; returns counts of what went."""
    now = time.time() if now is None else now
    retention = settings.OUTPUT_RETENTION_HOURS * 3600
    cutoff = now - retention
    counts = {"outputs": 0, "uploads": 0, "orphans": 0, "records": 0}

    for job in store.expired(cutoff):
        # The canonical path too: a run that lost its lease may have left a file behind.
        paths = {settings.outputs_dir / f"{job.id}.pdf"}
        if job.output_path:
            paths.add(settings.in_storage(job.output_path))
        if sum(_remove(path) for path in paths):
            counts["outputs"] += 1
        if _remove(settings.uploads_dir / job.id):
            counts["uploads"] += 1
        if job.output_path:
            store.clear_output(job.id)

    old = [job.id for job in store.expired(now - retention * RECORD_RETENTION_FACTOR)]
    counts["records"] = store.delete(old)

    # Orphans: files of deleted jobs, half-written temporaries, abandoned upload staging.
    candidates: dict[str, list[Path]] = {}
    for directory in (settings.outputs_dir, settings.uploads_dir):
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if not _older_than(entry, cutoff):
                continue
            name = entry.name
            if name.startswith("."):  # temporaries and staging areas
                if _remove(entry):
                    counts["orphans"] += 1
                continue
            job_id = name[:-4] if name.endswith(".pdf") else name
            candidates.setdefault(job_id, []).append(entry)
    live = store.known_ids(candidates)
    for job_id, orphan_paths in candidates.items():
        if job_id in live:
            continue  # a job still queued/running (or finished recently) keeps its files
        for path in orphan_paths:
            if _remove(path):
                counts["orphans"] += 1
    if any(counts.values()):
        log.info("cleanup: %s", counts)
    return counts


def expire_results(celery_app) -> None:
    """Delete task results older than `result_expires` from the result backend: rows of
    the database backend (db+postgresql...). Redis results carry a TTL of their own, so
    for Redis (and backends without stored results) Celery's cleanup() does nothing."""
    backend = getattr(celery_app, "backend", None) if celery_app is not None else None
    if backend is not None:
        backend.cleanup()


def periodic_cleanup(settings: Settings, store: JobStore, celery_app, now: float) -> None:
    """The reconciler's periodic housekeeping: expired files and records, then results."""
    try:
        cleanup_expired(settings, store, now=now)
    except Exception:
        log.exception("cleanup of expired outputs failed")
    try:
        expire_results(celery_app)
    except Exception:
        log.exception("expiring result-backend rows failed")
