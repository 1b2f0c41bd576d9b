"""Running one fallback job in a supervised child process (app.jobs.fallback_child).

The fallback's pool threads only wait here: the card work, and so its memory and CPU,
is the child's. Each child gets the settings on a pipe (never in its environment, where
other local users' tools could read secrets), an address-space limit and a lower
priority (set by the child itself, before it imports the engine), its own session (so
its whole group is killed at once) and a private temporary folder this side removes.
It is killed at the time limit, when its job is cancelled (the store says so; polled),
and when the pool shuts down; it also dies with the thread that started it.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from app.jobs.fallback_child import EXIT_OUT_OF_MEMORY
from app.jobs.limits import memory_overrun, time_overrun
from app.jobs.store import JobStore
from app.settings import Settings

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.5       # how soon a cancel or the time limit is acted on
FALLBACK = "a fallback process"


class ChildJobs:
    """Runs jobs in child processes, one per call to `run`, and kills them on `close`."""

    def __init__(self, settings: Settings, store: JobStore):
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen] = {}

    def run(self, job_id: str, node: str, stop: threading.Event) -> str:
        """Run the job in a child and wait for it; returns how it ended: "exited",
        "time", "cancelled" or "closed" (`stop` was set: the child is killed)."""
        scratch = Path(tempfile.mkdtemp(prefix="scm-fallback-"))
        try:
            child = self._spawn(job_id, node, scratch, stop)
            if child is None:
                return "closed"
            try:
                ended = self._watch(child, job_id, stop)
            finally:
                with self._lock:
                    self._children.pop(child.pid, None)
            self._settle(job_id, child, ended)
            return ended
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        """Kill every child now; their jobs stay journaled for the next boot."""
        with self._lock:
            children = list(self._children.values())
        for child in children:
            _kill_group(child)

    def pids(self) -> list[int]:
        with self._lock:
            return list(self._children)

    # --- internals --------------------------------------------------------------------
    def _spawn(self, job_id: str, node: str, scratch: Path,
               stop: threading.Event) -> subprocess.Popen | None:
        argv = [sys.executable, "-m", "app.jobs.fallback_child", "--parent", str(os.getpid()),
                "--node", node, job_id]
        env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1",
               # Fewer malloc arenas: each reserves 64 MB of the address-space limit.
               "MALLOC_ARENA_MAX": "2",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                           os.environ.get("PYTHONPATH")]))}
        with self._lock:
            if stop.is_set():
                return None
            child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     env=env, cwd=PROJECT_ROOT, start_new_session=True,
                                     close_fds=True)
            self._children[child.pid] = child
        try:
            assert child.stdin is not None
            child.stdin.write(self.settings.model_dump_json().encode())
            child.stdin.close()
        except OSError as exc:  # it died at once; _watch reads how
            log.warning("fallback child for job %s did not take its settings: %s", job_id, exc)
        log.info("job %s runs in fallback process %d", job_id, child.pid)
        return child

    def _watch(self, child: subprocess.Popen, job_id: str, stop: threading.Event) -> str:
        deadline = time.monotonic() + self.settings.fallback_time_limit
        while True:
            try:
                child.wait(timeout=POLL_SECONDS)
                return "closed" if stop.is_set() else "exited"
            except subprocess.TimeoutExpired:
                pass
            ended = "closed" if stop.is_set() else self._reason_to_kill(job_id, deadline)
            if ended is not None:
                _kill_group(child)
                child.wait()
                return ended

    def _reason_to_kill(self, job_id: str, deadline: float) -> str | None:
        if time.monotonic() >= deadline:
            return "time"
        try:
            job = self.store.get(job_id)
        except Exception as exc:  # a busy store: ask again at the next poll
            log.debug("fallback: cannot read job %s: %s", job_id, exc)
            return None
        return "cancelled" if job is None or job.status == "failed" else None

    def _settle(self, job_id: str, child: subprocess.Popen, ended: str) -> None:
        """A child that could not record its job's end: record it here (unless the pool
        is closing: then the journal resumes the job at the next boot)."""
        if ended in ("closed", "cancelled"):
            return
        job = self.store.get(job_id)
        if job is None or job.status != "running" \
                or not (job.worker or "").endswith(f"/{child.pid}"):
            return  # finished by the child, or never claimed by it
        if ended == "time":
            reason = time_overrun(self.settings.fallback_time_limit, FALLBACK)
        elif child.returncode in (EXIT_OUT_OF_MEMORY, -signal.SIGKILL):
            reason = memory_overrun(self.settings.fallback_memory_mb, FALLBACK)
        else:
            reason = f"the fallback process running this job died ({_describe(child)})"
        if self.store.break_lease(job_id, lease=job.lease, fail=reason):
            log.warning("job %s failed in the fallback: %s", job_id, reason)


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _describe(child: subprocess.Popen) -> str:
    code = child.returncode
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
