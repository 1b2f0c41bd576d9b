"""Run one job: claim it, do the card work, record the outcome. Celery tasks and the
thread fallback both call `run_job`; nothing here knows which one is calling.

Idempotency per job id (see `app.jobs.store` for the lease protocol):
* a finished job is never redone (`claim` answers `done`);
* a job running elsewhere with a fresh heartbeat is not started again (`busy`);
* a run whose lease was broken stops at its next progress report or heartbeat, and its
  final write is refused, so it cannot complete the job a second time;
* the output is written by the card engine, which writes a private temporary file and
  renames it into place (`app.cards.pdf.write_atomically`), so readers only ever see a
  whole PDF, whichever run wrote it.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from app.cards.budget import MemoryBudget
from app.db import TRANSIENT_ERRORS
from app.jobs import engine
from app.jobs.holders import holder_is_dead
from app.jobs.limits import time_overrun
from app.jobs.store import Job, JobStore, store_for
from app.settings import Settings

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0          # a heartbeat older than this means the holder is gone
HEARTBEAT_SECONDS = 5.0       # how often a running job renews its lease
PROGRESS_WRITE_INTERVAL = 0.5  # at most two progress writes per second per job
MAX_ATTEMPTS = 5              # runs started before a job is declared poisonous
TRANSIENT_RETRIES = 2         # retries of a transient failure (Celery and threads alike)

Progress = Callable[[float, str], None]


class JobFailed(Exception):
    """The job failed for good (bad input, card engine error); the message is for users."""


_PERMANENT_FAILURES: tuple[type[BaseException], ...] = (JobFailed, *engine.USER_ERRORS)


class TransientJobError(Exception):
    """A failure worth retrying (I/O, a locked database). The job was released to queued."""


class LeaseLost(Exception):
    """Another run took this job over (our heartbeat went stale); stop quietly."""


_PERMANENT_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError,
                        PermissionError)


def is_transient(exc: BaseException) -> bool:
    """Failures a retry may cure: I/O hiccups, disk full, a busy database, timeouts."""
    if isinstance(exc, _PERMANENT_OS_ERRORS):
        return False
    return isinstance(exc, (OSError, *TRANSIENT_ERRORS, TimeoutError, MemoryError))


def retry_delay(retries_done: int, *, base: float = 1.0, cap: float = 30.0) -> float:
    """Exponential backoff with jitter: ~1-2 s, then ~2-4 s, ... (never a thundering herd)."""
    delay = min(cap, base * (2 ** retries_done))
    return delay + random.uniform(0, delay)


# --- paths ------------------------------------------------------------------------------
def upload_dir(settings: Settings, job_id: str) -> Path:
    return settings.uploads_dir / job_id


def output_path(settings: Settings, job_id: str) -> Path:
    return settings.outputs_dir / f"{job_id}.pdf"


def produce(settings: Settings, job: Job, progress: Progress | None,
            memory_budget: MemoryBudget | None = None) -> tuple[Path, str]:
    """The job's PDF and a one-line summary for its message.

    The card engine writes the final path directly: every engine entry point writes
    through `app.cards.pdf.write_atomically` (a unique temporary file beside the target,
    then `os.replace`), so a killed run or two racing runs of one job never leave a
    partial PDF there. A second temporary file + rename + fsync here only doubled the I/O.
    """
    settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    final = output_path(settings, job.id)
    summary = engine.make_pdf(job.kind, job.params, upload_dir(settings, job.id), final,
                              progress, settings=settings, memory_budget=memory_budget)
    return final, summary or ""


# --- the lease keeper -------------------------------------------------------------------
class _LeaseKeeper:
    """Renews a claimed job's lease and records progress, throttled.

    Progress calls come from the card engine's thread; a small daemon thread renews the
    lease between them (a single large image can take longer than a heartbeat period).
    """

    def __init__(self, store: JobStore, job_id: str, token: str, forward: Progress | None,
                 heartbeat_seconds: float):
        self.store, self.job_id, self.token = store, job_id, token
        self.forward = forward
        self.heartbeat_seconds = heartbeat_seconds
        self.fraction, self.message = 0.0, "started"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last_write = 0.0
        self._last_forward = 0.0
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id[:8]}",
                                        daemon=True)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _renew(self) -> None:
        with self._lock:
            fraction, message = self.fraction, self.message
            self._last_write = time.monotonic()
        try:
            if not self.store.heartbeat(self.job_id, self.token, progress=fraction,
                                        message=message):
                self.lost.set()
        except TRANSIENT_ERRORS as exc:  # busy or restarting database: next beat
            log.warning("heartbeat of job %s failed: %s", self.job_id, exc)

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self._renew()

    def progress(self, fraction: float, message: str = "") -> None:
        if self.lost.is_set():
            raise LeaseLost(self.job_id)
        try:
            fraction = min(1.0, max(0.0, float(fraction)))
        except (TypeError, ValueError):
            fraction = self.fraction
        with self._lock:
            self.fraction, self.message = fraction, str(message or self.message)[:500]
            due = time.monotonic() - self._last_write >= PROGRESS_WRITE_INTERVAL
        if due:
            self._renew()
            if self.lost.is_set():
                raise LeaseLost(self.job_id)
        if self.forward is not None and \
                time.monotonic() - self._last_forward >= PROGRESS_WRITE_INTERVAL:
            self._last_forward = time.monotonic()
            try:
                self.forward(self.fraction, self.message)
            except Exception as exc:  # progress display must never fail a job
                log.debug("progress forward of job %s failed: %s", self.job_id, exc)


# --- the entry point ---------------------------------------------------------------------
def run_job(settings: Settings, job_id: str, *, runner: str, progress: Progress | None = None,
            worker_node: str | None = None, store: JobStore | None = None,
            retry_transient: bool = False, lease_seconds: float = LEASE_SECONDS,
            heartbeat_seconds: float = HEARTBEAT_SECONDS,
            memory_budget: MemoryBudget | None = None) -> dict:
    """Run job `job_id` once, idempotently. Returns {"job_id", "status", ...}.

    `runner` names who runs it (recorded as the job's `worker`); `worker_node` is the
    Celery node name (or thread pool) the reconciler matches when a worker dies.
    `progress(fraction, message)` is called (throttled) besides the store update.
    With `retry_transient`, a transient failure releases the job and raises
    TransientJobError so the caller can retry; otherwise it fails the job.
    A permanent failure marks the job failed and returns status "failed" with "error".
    Sheets jobs decode within `memory_budget` (default: a Celery worker's).
    """
    store = store or store_for(settings.database_url)
    claim = store.claim(job_id, worker=runner, worker_node=worker_node or runner,
                        lease_seconds=lease_seconds, max_attempts=MAX_ATTEMPTS)
    # (claim.job is None also when "busy": claim() ran out of rounds on a changing row)
    if claim.outcome == "busy" and claim.job and holder_is_dead(claim.job.worker, settings.node_name):
        # Its holder on this host is gone (a pool child killed by the OOM killer, say):
        # no need to wait for the lease to expire.
        if store.break_lease(job_id, lease=claim.job.lease,
                             message=f"requeued: {claim.job.worker} died"):
            claim = store.claim(job_id, worker=runner, worker_node=worker_node or runner,
                                lease_seconds=lease_seconds, max_attempts=MAX_ATTEMPTS)
    if claim.outcome != "claimed" or claim.job is None or claim.token is None:
        status = claim.job.status if claim.job else "missing"
        log.info("job %s not run by %s: %s (status %s)", job_id, runner, claim.outcome, status)
        if claim.outcome == "exhausted" and claim.job:
            return {"job_id": job_id, "status": "failed", "error": claim.job.error}
        return {"job_id": job_id, "status": status, "skipped": claim.outcome}

    job, token = claim.job, claim.token
    started = time.monotonic()
    with _LeaseKeeper(store, job_id, token, progress, heartbeat_seconds) as keeper:
        try:
            path, summary = produce(settings, job, keeper.progress, memory_budget)
        except LeaseLost:
            log.warning("job %s: lease lost by %s; another run owns it now", job_id, runner)
            return {"job_id": job_id, "status": "running", "skipped": "lease_lost"}
        except _PERMANENT_FAILURES as exc:
            message = str(exc) or type(exc).__name__
            store.fail(job_id, token, message[:2000])
            return {"job_id": job_id, "status": "failed", "error": message}
        except Exception as exc:
            message = _unexpected(store, job_id, token, exc, retry_transient,
                                  time_limit=settings.soft_time_limit)
            return {"job_id": job_id, "status": "failed", "error": message}
    elapsed = f"done in {time.monotonic() - started:.1f} s"
    if not store.succeed(job_id, token, output_path=settings.storage_relative(path),
                         message=f"{elapsed}: {summary}" if summary else elapsed):
        log.warning("job %s: finished by %s after losing its lease; result not recorded "
                    "(the run holding the lease records it)", job_id, runner)
        _drop_output_of_failed(store, job_id, path)
        return {"job_id": job_id, "status": "running", "skipped": "lease_lost"}
    return {"job_id": job_id, "status": "succeeded", "output": path.name}


def _drop_output_of_failed(store: JobStore, job_id: str, path: Path) -> None:
    """A run that lost its lease to a failure (a cancel, say) leaves no PDF behind; one
    that lost it to another run leaves the file alone (that run writes the same path)."""
    job = store.get(job_id)
    if job is None or job.status == "failed":
        path.unlink(missing_ok=True)


def _unexpected(store: JobStore, job_id: str, token: str, exc: Exception,
                retry_transient: bool, *, time_limit: float) -> str:
    """Record an unexpected failure; returns the job's error (or raises to retry)."""
    if is_transient(exc):
        message = f"transient failure: {type(exc).__name__}: {exc}"
        if retry_transient:
            log.warning("job %s: %s; will retry", job_id, message)
            store.release(job_id, token, f"retrying after {message}"[:500])
            raise TransientJobError(message) from exc
        store.fail(job_id, token, message[:2000])
        return message
    if type(exc).__name__ == "SoftTimeLimitExceeded":  # Celery's, without importing Celery
        message = time_overrun(time_limit)  # not retried: it would only time out again
    else:
        log.exception("job %s failed unexpectedly", job_id)
        message = f"internal error ({type(exc).__name__}); see the worker log"
    store.fail(job_id, token, message)
    return message
