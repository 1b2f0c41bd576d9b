"""Tells the notifier the mode and worker counts whenever they change (read from the
manager's published state once a second: cheap)."""
from __future__ import annotations

import logging
import threading

from app.runtime.lifecycle import Notifier
from app.supervisor.control import ManagerHandle

log = logging.getLogger(__name__)
INTERVAL = 1.0


def status_line(health: dict) -> str:
    workers = health.get("workers") or {}
    return (f"mode {health.get('mode')}, workers {workers.get('running')}/"
            f"{workers.get('expected')} running")


class StatusReporter:
    def __init__(self, handle: ManagerHandle, notifier: Notifier, *, interval=INTERVAL):
        self.handle = handle
        self.notifier = notifier
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last = status_line(handle.health())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="status-reporter",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                line = status_line(self.handle.health())
            except Exception:  # the reporter must never take the process down
                log.exception("reading the manager's health failed")
                continue
            if line != self.last:
                self.last = line
                self.notifier.status(line)
