"""A stand-in manager for unit tests of the control socket and API (never for "Must show").

Its answers have the real manager's shapes: the keys `app.supervisor.admin_ops` lists
for each operation (tests/web/test_admin_ops.py holds the fake to them, and
tests/e2e/test_admin_e2e.py the real manager).
"""
from __future__ import annotations

import os
import threading

from kombu.exceptions import OperationalError

from app.queue_names import KNOWN_QUEUES
from app.supervisor.errors import BrokerUnavailable, InvalidRequest
from app.supervisor.worker_slot import REASONS, RUNNING


class FakeManager:
    """Records calls; answers with the shapes of the real manager's surface."""

    def __init__(self, settings=None, **_):
        self.calls: list[tuple[str, dict]] = []
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.broker_down = False

    def open(self):
        self.opened.set()

    def close(self, timeout=None):
        self.closed.set()

    def _record(self, op, **kwargs):
        self.calls.append((op, kwargs))

    def start(self, concurrency=None, queues=None):
        self._record("start", concurrency=concurrency, queues=queues)
        if queues and "bogus" in queues:
            raise InvalidRequest("unknown queue bogus")
        return self.status()

    def stop(self, timeout=30):
        self._record("stop", timeout=timeout)
        return self.status()

    def restart(self, queue=None):
        self._record("restart", queue=queue)
        return self.status()

    def status(self):
        return {"mode": "celery",
                "workers": [{"name": "default@host", "queue": "default", "pid": 4242,
                             "state": RUNNING, "pool_size": 1, "restarts": 2,
                             "restarts_by_reason": {**dict.fromkeys(REASONS, 0),
                                                    "crash": 1, "manual": 1},
                             "responsive": True, "cpu_percent": 1.5, "rss_bytes": 1000,
                             "memory_bytes": 5000}],
                "broker": {"url": "redis://127.0.0.1:1/0", "reachable": True,
                           "since": None, "last_error": None, "embedded": False,
                           "process": None},
                "queues": {"default": 3, "pdf_generation": 0, "pdf_offset": None},
                "restarts_by_reason": {**dict.fromkeys(REASONS, 0), "crash": 1, "manual": 1},
                "concurrency": dict.fromkeys(KNOWN_QUEUES, 1),
                "manager": {"running": True, "pid": os.getpid(), "uptime_seconds": 1.0,
                            "threads_reason": None}}

    def health(self):
        return {"healthy": True, "status": "healthy", "mode": "celery", "uptime_seconds": 1.0,
                "restart_count": 2, "workers": {"running": 3, "expected": 3},
                "pid": 1234, "log": "/secret/path"}

    def tasks(self):
        if self.broker_down:
            raise BrokerUnavailable("broker down")
        return {"workers": {}}

    def stats(self):
        if self.broker_down:
            raise OperationalError("connection refused")
        return {"workers": {}}

    def purge(self, queues):
        self._record("purge", queues=queues)
        return {"purged": dict.fromkeys(queues, 0)}

    def log_tail(self, worker, max_bytes=16 * 1024):
        self._record("log_tail", worker=worker, max_bytes=max_bytes)
        return {"worker": worker, "size": 0, "offset": 0, "truncated": False, "text": ""}

    def worker_available(self, queue):
        return queue != "pdf_offset"
