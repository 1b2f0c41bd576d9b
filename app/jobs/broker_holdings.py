"""What the broker and the live workers hold, as the reconciler asks it: task and job ids
waiting in the Redis queue lists, whether the broker is up, and which task ids a live
worker has reserved or is running. Every answer is None when it cannot be known, so the
reconciler concludes nothing from a broker or inspect error."""
from __future__ import annotations

import logging
from collections.abc import Iterable

from app.broker import is_redis_url
from app.broker import queues as broker_queues
from app.jobs.dispatch import Dispatcher
from app.settings import Settings

log = logging.getLogger(__name__)


class BrokerHoldings:
    def __init__(self, settings: Settings, dispatcher: Dispatcher, inspect_timeout: float):
        self.settings = settings
        self.dispatcher = dispatcher
        self.inspect_timeout = inspect_timeout

    def contents(self, queue: str | None) -> set[str] | None:
        """Task ids and job ids of messages waiting in the queue lists; None if unknown."""
        if not is_redis_url(self.settings.broker_url) or not self.broker_up():
            return None
        queues = [queue] if queue else list(self.settings.queue_weights) or ["default"]
        try:
            return broker_queues.waiting_ids(
                self.dispatcher.celery, [self.settings.broker_queue(q) for q in queues])
        except Exception as exc:
            log.info("reconciler: cannot read the broker queues (%s)", exc)
            return None

    def broker_up(self) -> bool:
        monitor = self.dispatcher.broker_monitor
        try:
            return bool(self.settings.broker_url and monitor is not None and monitor.is_up())
        except Exception:
            return False

    def held_by_workers(self, task_ids: Iterable[str]) -> set[str] | None:
        """Which of these task ids a live worker knows (reserved, active, scheduled)."""
        task_ids = list(task_ids)
        if not task_ids:
            return set()
        try:
            # On the dispatcher's one inspector thread: see Dispatcher.query_task.
            replies = self.dispatcher.query_task(task_ids, self.inspect_timeout)
        except Exception as exc:
            log.info("reconciler: cannot inspect workers (%s)", exc)
            return None
        held: set[str] = set()
        for tasks in replies.values():
            held.update((tasks or {}).keys())
        return held
