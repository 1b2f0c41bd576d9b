"""Work the manager thread must not wait for: a dead worker's unacked messages are
restored, then the jobs side is told (`on_worker_lost`), in order, on one thread."""
from __future__ import annotations

import logging
import queue as queue_module
import threading
from typing import Any, Callable

from app.broker import BrokerClient, BrokerMonitor, BrokerUnavailable

log = logging.getLogger(__name__)


def after_worker_lost(client: BrokerClient | None, broker: BrokerMonitor, name: str,
                      queue: str, started: float, died: float,
                      notify: Callable[[str, str], Any] | None) -> None:
    """On the hooks thread: restore the dead worker's unacked messages, then tell the jobs side."""
    if client is not None and broker.is_up():
        try:
            client.restore_unacked(queue, delivered_after=started, delivered_before=died)
        except BrokerUnavailable as exc:
            log.warning("could not restore unacked messages of %s: %s", name, exc)
    if notify is not None:
        try:
            notify(name, queue)
        except Exception:
            log.exception("on_worker_lost(%s, %s) failed", name, queue)


class HookThread:
    """Runs callbacks one at a time, in order, off the manager thread."""

    def __init__(self):
        self._queue: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="scm-worker-hooks", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args) -> None:
        self._queue.put((fn, args))

    def stop(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("hook %s failed", getattr(fn, "__name__", fn))
