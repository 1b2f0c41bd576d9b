"""Send a job to Celery while that can work, else to this process's thread pool.

Celery is chosen when the broker answers (the BrokerMonitor's cached, hysteresis-damped
view) and a worker can take the job's queue (the manager's view, where there is one).
That view is asked for every submission, never cached here: the manager publishes a
queue's last consumer going away before it answers the next question.
A publish that fails anyway (the broker died between check and send) lands in threads
instead of failing the request.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from app.celery_config import CLIENT_PUBLISH_RETRY_POLICY, TASK_FOR_KIND, make_celery
from app.jobs.fair_use import FairQueue  # fair use (issue 12)
from app.jobs.fallback import ThreadFallback, pool_node
from app.jobs.store import Job, JobStore
from app.settings import Settings

log = logging.getLogger(__name__)


class BrokerView(Protocol):
    def is_up(self) -> bool: ...


class Dispatcher:
    """`submit(job)` -> "celery" | "threads", recorded on the job as its mode."""

    def __init__(self, settings: Settings, store: JobStore, fallback: ThreadFallback, *,
                 broker_monitor: BrokerView | None = None,
                 worker_available: Callable[[str], bool] | None = None,
                 celery_app=None):
        self.settings = settings
        self.store = store
        self.fallback = fallback
        self.broker_monitor = broker_monitor
        # None: no local manager information (workers may run on other hosts).
        self.worker_available = worker_available
        self._celery = celery_app
        self._owns_celery = celery_app is None
        self._celery_lock = threading.Lock()
        self._inspector: ThreadPoolExecutor | None = None
        self._inspector_thread: threading.Thread | None = None
        # Fair use (issue 12): a user's jobs past the in-flight limit wait in the store.
        self.fair_queue = FairQueue(settings, store)

    @property
    def celery(self):
        """The web side's Celery client (short timeouts); None without a broker."""
        if self._celery is None and self.settings.broker_url:
            with self._celery_lock:
                if self._celery is None:
                    self._celery = make_celery(self.settings, role="client")
        return self._celery

    def query_task(self, task_ids: Iterable[str], timeout: float) -> dict:
        """`control.inspect(timeout).query_task(*task_ids)`, always on this dispatcher's
        one long-lived inspector thread.

        Celery's broadcast replies come back on a reply queue named after the calling
        *thread* (kombu's Mailbox.oid is thread-local); every new thread that inspects
        leaves one more reply-queue binding in Redis. Funnelling every inspect of the
        process through a single thread keeps that to one binding.
        """
        task_ids = list(task_ids)

        def query() -> dict:
            return self.celery.control.inspect(timeout=timeout).query_task(*task_ids) or {}

        if threading.current_thread() is self._inspector_thread:
            return query()
        with self._celery_lock:
            if self._inspector is None:
                self._inspector = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="celery-inspect",
                    initializer=self._remember_inspector_thread)
            inspector = self._inspector
        return inspector.submit(query).result()

    def _remember_inspector_thread(self) -> None:
        self._inspector_thread = threading.current_thread()

    def close(self) -> None:
        """Stop the inspector thread and close the Celery client this dispatcher made
        (its broker connection pool); a client passed in belongs to the caller."""
        with self._celery_lock:
            inspector, self._inspector = self._inspector, None
            celery = self._celery if self._owns_celery else None
            if self._owns_celery:
                self._celery = None
        if inspector is not None:
            inspector.shutdown(wait=True)
        if celery is not None:
            try:
                celery.close()
            except Exception as exc:
                log.debug("closing the Celery client failed: %s", exc)

    def celery_usable(self, queue: str) -> bool:
        if not self.settings.broker_url or self.broker_monitor is None:
            return False
        try:
            if not self.broker_monitor.is_up():
                return False
            return self.worker_available is None or bool(self.worker_available(queue))
        except Exception as exc:  # a broken probe means "not sure": threads are safe
            log.warning("dispatch: availability check failed (%s); using threads", exc)
            return False

    def consumed(self, queue: str) -> bool | None:
        """Whether a live worker consumes `queue`; None when that is not known here (no
        broker, the broker is down, or no manager view)."""
        if not self.settings.broker_url or self.broker_monitor is None \
                or self.worker_available is None:
            return None
        try:
            if not self.broker_monitor.is_up():
                return None
            return bool(self.worker_available(queue))
        except Exception as exc:
            log.info("dispatch: cannot tell who consumes %s (%s)", queue, exc)
            return None

    def submit(self, job: Job | str) -> str:
        record = self.store.get(job) if isinstance(job, str) else job
        if record is None:
            raise LookupError("no such job")
        if record.status != "queued":  # running or finished: sending it again is pointless
            return record.mode or "threads"
        if record.mode is None and not self.fair_queue.may_dispatch(record):  # issue 12
            return "held"  # queued, no mode: release_held() sends it when a slot frees
        if self.celery_usable(record.queue) and self._send_to_celery(record):
            return "celery"
        self._send_to_threads(record)
        return "threads"

    def release_held(self) -> list[str]:
        """Fair use (issue 12): send the held jobs that fit now, users in turn."""
        return [job.id for job in self.fair_queue.releasable() if self.submit(job) != "held"]

    def _send_to_celery(self, job: Job) -> bool:
        task_id = uuid.uuid4().hex  # new per dispatch: the reconciler tells copies apart
        if not self.store.set_dispatch(job.id, mode="celery", task_id=task_id):
            return True  # picked up meanwhile by a copy sent earlier: nothing to send
        try:
            self.celery.send_task(
                TASK_FOR_KIND[job.kind], args=[job.id], task_id=task_id,
                queue=self.settings.broker_queue(job.queue),
                routing_key=self.settings.broker_queue(job.queue),
                retry=True, retry_policy=CLIENT_PUBLISH_RETRY_POLICY)
        except Exception as exc:  # kombu OperationalError, redis errors, OSError, ...
            log.warning("dispatch: publishing job %s failed (%s: %s); running it in threads",
                        job.id, type(exc).__name__, exc)
            return False
        # After the publish returned: see JobStore.mark_published.
        self.store.mark_published(job.id)
        log.info("job %s (%s) sent to Celery queue %s", job.id, job.kind, job.queue)
        return True

    def _send_to_threads(self, job: Job) -> None:
        # Journal first: if this process dies before the job finishes, the entry survives.
        if self.store.set_dispatch(job.id, mode="threads", worker_node=pool_node(self.settings)):
            self.fallback.submit(job.id)
        log.info("job %s (%s) runs in the thread fallback", job.id, job.kind)
