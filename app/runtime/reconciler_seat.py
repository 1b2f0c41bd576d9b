"""Exactly one periodic jobs reconciler per instance folder, whichever process runs it.

A lock file, `run/jobs-reconciler.lock`, picks the process (however many gunicorn
workers or hosts of the same folder ask). A process whose manager sees its workers die
must still re-dispatch their jobs even when another process sweeps: it uses a standby
reconciler that never sweeps. Re-dispatching from two processes is safe: every change
is a compare-and-set in the store (see app.jobs.reconciler).
"""
from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable

from app.jobs.job_services import JobServices
from app.jobs.reconciler import Reconciler
from app.settings import Settings


class ReconcilerSeat:
    def __init__(self, settings: Settings, jobs: Callable[[], JobServices]):
        self.settings = settings
        self._jobs = jobs
        self._mutex = threading.RLock()
        self._running: tuple[Reconciler, int] | None = None  # (reconciler, lock fd)
        self._standby: Reconciler | None = None

    @property
    def running(self) -> Reconciler | None:
        """The periodic reconciler when this process runs it."""
        entry = self._running
        return entry[0] if entry else None

    def start(self) -> Reconciler | None:
        """Resume the thread journal and start the periodic sweep here, unless another
        process of the instance runs it (then None)."""
        with self._mutex:
            if self._running is not None:
                return self._running[0]
            fd = self._take_lock()
            if fd is None:
                return None
            reconciler = self._new()
            self._running = (reconciler, fd)
        reconciler.resume_journal()
        reconciler.start()
        return reconciler

    def stop(self) -> None:
        with self._mutex:
            running, self._running = self._running, None
            standby, self._standby = self._standby, None
        if running is not None:
            reconciler, fd = running
            reconciler.stop()
            os.close(fd)  # drops the lock
        if standby is not None:
            standby.stop()

    def for_this_process(self) -> Reconciler:
        """The periodic reconciler when it runs here, else the standby."""
        with self._mutex:
            if self._running is not None:
                return self._running[0]
            if self._standby is None:
                self._standby = self._new()
            return self._standby

    def _new(self) -> Reconciler:
        jobs = self._jobs()
        return Reconciler(self.settings, jobs.store, jobs.dispatcher)

    def _take_lock(self) -> int | None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.settings.run_dir / "jobs-reconciler.lock",
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd
