"""The fallback (mode `threads`): runs jobs while Celery cannot.

A small pool of threads, started lazily on the first submission (`create_app()` starts
nothing), takes journaled job ids in order; each thread hands its job to a supervised
child process (app.jobs.fallback_process) and waits, so the card work never runs in the
web server or the manager: at most FALLBACK_MAX_JOBS jobs at once per process, the rest
wait in the queue, journaled. Threads are daemons on purpose: a shutting-down process
need not wait for a long PDF job. Every job here is journaled in the store before it is
queued, and a job that dies with its process is resumed by the reconciler at the next
boot.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Protocol

from app.jobs import runner
from app.jobs.fallback_process import ChildJobs
from app.jobs.holders import runner_name
from app.jobs.store import JobStore
from app.settings import Settings

log = logging.getLogger(__name__)

_STOP = object()


def pool_node(settings: Settings) -> str:
    """The journal's name for this process's pool, `threads@<host>/<pid>`: the reconciler
    can tell whether the process holding a journaled job is still alive
    (app.jobs.holders)."""
    return runner_name(f"threads@{settings.node_name}")


class JobRunner(Protocol):
    """Where a pool thread runs a job: `run` returns once the job is over for this
    process, or soon after `stop` is set; `close` stops what still runs now (its jobs
    stay journaled)."""

    def run(self, job_id: str, node: str, stop: threading.Event) -> str: ...

    def close(self) -> None: ...


class InProcessJobs:
    """Runs the job in the calling thread: for tests whose fake job kinds exist only in
    the test process. The web server and the manager use ChildJobs."""

    def __init__(self, settings: Settings, store: JobStore):
        self.settings, self.store = settings, store

    def run(self, job_id: str, node: str, stop: threading.Event) -> str:
        for attempt in range(runner.TRANSIENT_RETRIES + 1):
            try:
                result = runner.run_job(self.settings, job_id, runner=node, worker_node=node,
                                        store=self.store,
                                        retry_transient=attempt < runner.TRANSIENT_RETRIES)
            except runner.TransientJobError as exc:
                delay = runner.retry_delay(attempt)
                log.warning("job %s: %s; retry %d in %.1f s", job_id, exc, attempt + 1, delay)
                if stop.wait(delay):
                    return "closed"
                continue
            return str(result.get("status"))
        return "exited"

    def close(self) -> None:
        pass  # the job runs in a pool thread: it stops at its next retry wait


class ThreadFallback:
    """A bounded pool of daemon threads, each handing journaled job ids to `jobs`
    (default: a supervised child process per job)."""

    def __init__(self, settings: Settings, store: JobStore, *, max_workers: int | None = None,
                 keepalive_seconds: float = runner.HEARTBEAT_SECONDS,
                 jobs: JobRunner | None = None):
        self.settings = settings
        self.store = store
        self.max_workers = max_workers or settings.FALLBACK_MAX_JOBS
        self.jobs: JobRunner = jobs or ChildJobs(settings, store)
        self.keepalive_seconds = keepalive_seconds
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._waiting: set[str] = set()
        self._pid: int | None = None
        self._closed = threading.Event()

    # --- public surface ------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        """Queue a job already journaled as mode=threads in the store."""
        self._ensure_started()
        with self._lock:
            self._waiting.add(job_id)
        self._queue.put(job_id)

    def shutdown(self, wait: float | None = None) -> None:
        """Stop taking jobs and kill the running ones' processes; queued and running jobs
        stay journaled for the next boot."""
        self._closed.set()
        self.jobs.close()
        for _ in self._threads:
            self._queue.put(_STOP)
        if wait:
            deadline = time.monotonic() + wait
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    # --- internals ------------------------------------------------------------------
    def _ensure_started(self) -> None:
        with self._lock:
            # After a fork (gunicorn preload), the parent's threads do not exist here.
            if self._pid == os.getpid() and self._threads and not self._closed.is_set():
                return
            self._pid = os.getpid()
            self._closed.clear()
            self._queue = queue.Queue()
            self._waiting.clear()
            self._threads = [
                threading.Thread(target=self._work, name=f"job-fallback-{i}", daemon=True)
                for i in range(self.max_workers)
            ]
            self._threads.append(threading.Thread(target=self._keep_journal_fresh,
                                                  name="job-fallback-journal", daemon=True))
            for thread in self._threads:
                thread.start()
            log.info("thread fallback started with %d worker thread(s)", self.max_workers)

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is _STOP:
                return
            with self._lock:
                self._waiting.discard(job_id)
            try:
                self._run(job_id)
            except Exception:  # one job's bug must not kill a pool thread
                log.exception("thread fallback: job %s crashed its runner", job_id)

    def _run(self, job_id: str) -> None:
        ended = self.jobs.run(job_id, pool_node(self.settings), self._closed)
        log.info("job %s in the fallback: %s", job_id, ended)

    def _keep_journal_fresh(self) -> None:
        # Jobs waiting in this pool have no heartbeat of their own; refreshing their
        # journal entries tells other processes' reconcilers that a live pool holds them.
        while not self._closed.wait(self.keepalive_seconds):
            with self._lock:
                waiting = list(self._waiting)
            if waiting:
                try:
                    self.store.touch_queued(waiting)
                except Exception as exc:
                    log.warning("could not refresh the thread journal: %s", exc)
