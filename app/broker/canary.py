"""Responsiveness where the transport has no broadcast (SQS): canary health checks.

Celery's `ping` is a fanout message; on SQS it reaches nobody, so workers would never
leave STARTING. Instead each worker gets a `scm.health_check` task on its own queue
(Celery's `worker_direct` queue, `<node name>.dq2`, which every worker consumes when the
transport has no broadcast: app/celery_config.py), and the answer, read from the result
backend, is timed end to end: publish, broker, the worker's consumer, a pool process, the
result backend.

A canary competes with the jobs for the worker's pool (prefetch 1, acks late), so a worker
whose every pool process runs a job answers only when one finishes. Hence three answers:
answered (the right node replied), pending (sent, no reply yet, younger than
`overdue_after`), missed (older than that). `overdue_after` is above the hard time limit:
by then Celery has killed any task, so a worker that still has not answered is hung.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery.utils import worker_direct

from app.celery_config import TASK_HEALTH

log = logging.getLogger(__name__)

POLL = 0.05


@dataclass
class CanaryRound:
    answered: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)
    missed: set[str] = field(default_factory=set)


class Canaries:
    """At most one canary in flight per worker; round trip times of the last answers."""

    def __init__(self, app: Any):
        self.app = app
        self._in_flight: dict[str, tuple[Any, float]] = {}   # node -> (AsyncResult, sent)
        self.round_trip: dict[str, float] = {}                # node -> seconds

    def round(self, names: list[str], timeout: float, overdue_after: float) -> CanaryRound:
        """Send a canary to each of `names` without one in flight, wait up to `timeout`
        for answers, and sort every name into answered, pending or missed."""
        for name in set(self._in_flight) - set(names):
            self._forget(name)
        for name in names:
            if name not in self._in_flight:
                self._send(name, overdue_after)
        deadline = time.monotonic() + timeout
        answered: set[str] = set()
        while True:
            waiting = [name for name in names if name in self._in_flight]
            answered |= {name for name in waiting if self._answered(name)}
            if not any(name in self._in_flight for name in names) \
                    or time.monotonic() >= deadline:
                break
            time.sleep(POLL)
        now = time.time()
        result = CanaryRound(answered=answered)
        for name in set(names) - answered:
            entry = self._in_flight.get(name)
            if entry is None or now - entry[1] >= overdue_after:
                result.missed.add(name)  # a wrong answer, or none in time
                self._forget(name)       # the next round sends a fresh one
            else:
                result.pending.add(name)
        return result

    def _send(self, name: str, overdue_after: float) -> None:
        # Expires: a canary the worker gets after it stopped mattering is dropped unrun.
        result = self.app.send_task(TASK_HEALTH, queue=worker_direct(name),
                                    expires=overdue_after)
        self._in_flight[name] = (result, time.time())

    def _answered(self, name: str) -> bool:
        result, sent = self._in_flight[name]
        if not result.ready():
            return False
        value = result.result if result.successful() else None
        self._forget(name)
        if isinstance(value, dict) and value.get("node") == name:
            self.round_trip[name] = round(time.time() - sent, 3)
            return True
        log.warning("canary for %s came back %s: %r", name, result.state, value)
        return False

    def _forget(self, name: str) -> None:
        entry = self._in_flight.pop(name, None)
        if entry is not None:
            try:
                entry[0].forget()
            except Exception:  # a backend without forget(), or one that is down
                pass
