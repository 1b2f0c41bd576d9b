"""A stand-in manager for unit tests of the control socket and API (never for "Must show")."""
from __future__ import annotations

import os
import threading

from app.supervisor.errors import BrokerUnavailable, InvalidRequest


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
        return {"started": queues or ["pdf_generation", "pdf_offset", "default"]}

    def stop(self, timeout=30):
        self._record("stop", timeout=timeout)
        return {"stopped": ["pdf_generation", "pdf_offset", "default"]}

    def restart(self, queue=None):
        self._record("restart", queue=queue)
        return {"restarted": [queue] if queue else ["pdf_generation", "pdf_offset", "default"]}

    def status(self):
        return {"mode": "celery", "pid_of_owner": os.getpid(),
                "workers": [{"name": "default@host", "queue": "default", "pid": 4242,
                             "state": "RUNNING", "pool_size": 1, "restarts": 2,
                             "restarts_by_reason": {"crash": 1, "hang": 0, "memory": 0,
                                                    "manual": 1},
                             "responsive": True, "cpu_percent": 1.5, "rss_bytes": 1000,
                             "memory_bytes": 5000}],
                "broker": {"url": "redis://127.0.0.1:1/0", "reachable": True,
                           "embedded": False},
                "queues": {"default": 3, "pdf_generation": 0, "pdf_offset": None}}

    def health(self):
        return {"healthy": True, "status": "healthy", "mode": "celery", "uptime_seconds": 1.0,
                "restart_count": 2, "workers": {"running": 3, "expected": 3},
                "pid": 1234, "log": "/secret/path"}

    def tasks(self):
        if self.broker_down:
            raise BrokerUnavailable("broker down")
        return {"active": {}, "reserved": {}, "scheduled": {}}

    def stats(self):
        from kombu.exceptions import OperationalError
        if self.broker_down:
            raise OperationalError("connection refused")
        return {"workers": {}}

    def purge(self, queues):
        self._record("purge", queues=queues)
        return {"purged": {name: 0 for name in queues}}

    def worker_available(self, queue):
        return queue != "pdf_offset"
