"""BrokerClient: talks to workers and queues through the broker (ping, inspect, consumers,
queue depths, purge, restore of unacked messages).

Everything here goes over the network, so everything runs on one dedicated
daemon thread and callers wait with a deadline. Two reasons:
- kombu's control publish retries a lost connection until the broker is back;
  a caller (the manager's prober, an HTTP thread) must never hang on that;
- Celery's reply queue is named after the calling thread; one stable thread
  keeps one reply queue (and one binding) instead of a new one per call.

Nothing here forks or signals: that stays on the manager's thread.
"""
from __future__ import annotations

import logging
import queue as queue_module
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from app import transports
from app.broker import queues as broker_queues
from app.broker.canary import Canaries, CanaryRound
from app.broker.errors import BrokerUnavailable
from app.broker.monitor import is_redis_url
from app.celery_config import make_celery
from app.settings import Settings

log = logging.getLogger(__name__)

# Fail fast while connecting: the broker monitor, not this client, decides about outages.
FAST_FAILOVER = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2,
                 "interval_max": 0.2, "connect_retries_timeout": 1.0,
                 "socket_connect_timeout": 1.0, "socket_timeout": 2.0}


def make_control_app(settings: Settings, broker_url: str):
    """A Celery app used only to reach workers; same exchanges and key layout as theirs."""
    app = make_celery(settings, role="client")
    options = dict(app.conf.broker_transport_options or {})
    options.update(FAST_FAILOVER)
    # No broker_pool_limit of its own: kombu keeps one pool limit per process, and an app
    # asking for a smaller one while another app's connections are out raises
    # "Can't shrink pool when in use" (seen in the manager, which runs several apps).
    app.conf.update(broker_url=broker_url, broker_transport_options=options,
                    broker_connection_max_retries=1)
    return app


class BrokerClient:
    def __init__(self, settings: Settings, broker_url: str, *, app=None, name: str = "scm-broker-client"):
        self.settings = settings
        self.broker_url = broker_url
        self.name = name
        self._owns_app = app is None
        self.app = app or make_control_app(settings, broker_url)
        self._calls: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.broadcast = transports.has_broadcast(broker_url)
        self._canaries = Canaries(self.app)

    # --- the public calls (any thread) ---------------------------------------------
    def canary_round(self, names: list[str], timeout: float,
                     overdue_after: float) -> CanaryRound:
        """Canary health checks for transports without broadcast (app/broker/canary.py)."""
        return self.call(lambda: self._canaries.round(names, timeout, overdue_after),
                         timeout + 3.0)

    @property
    def canary_round_trips(self) -> dict[str, float]:
        return dict(self._canaries.round_trip)

    def _require_broadcast(self) -> None:
        if not self.broadcast:
            raise BrokerUnavailable(
                f"the {transports.family(self.broker_url)} transport carries no broadcast "
                "(Celery ping/inspect cannot reach workers)")

    def ping(self, names: list[str], timeout: float) -> set[str]:
        """The names among `names` that answered within `timeout`."""
        self._require_broadcast()

        def do():
            replies = self.app.control.ping(destination=list(names), timeout=timeout,
                                            limit=len(names))
            return {name for reply in replies or [] for name in reply}
        return self.call(do, timeout + 2.0)

    def inspect(self, names: list[str], methods: tuple[str, ...], timeout: float) -> dict:
        """{method: {worker: reply}} for Celery inspect methods (active, reserved, stats...)."""
        self._require_broadcast()

        def do():
            inspector = self.app.control.inspect(destination=list(names) or None,
                                                 timeout=timeout,
                                                 limit=len(names) or None)
            return {method: getattr(inspector, method)() or {} for method in methods}
        return self.call(do, timeout * len(methods) + 2.0)

    def consumers(self, timeout: float, slack: float = 2.0) -> dict[str, set[str]]:
        """{queue: {worker names}} of every live worker that consumes a queue (a broadcast:
        takes the whole `timeout`, since nobody knows how many workers will answer; `slack`
        more for connecting and publishing)."""
        self._require_broadcast()

        def do():
            replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
            found: dict[str, set[str]] = {}
            for worker, queues in replies.items():
                for queue in queues or []:
                    raw = queue.get("name") if isinstance(queue, dict) else None
                    name = self.settings.our_queue(raw) if isinstance(raw, str) else None
                    if name:
                        found.setdefault(name, set()).add(worker)
            return found
        return self.call(do, timeout + slack)

    def queue_depths(self, queues: list[str], timeout: float = 2.0) -> dict[str, int | None]:
        """Messages waiting per queue: exact on Redis and AMQP; None where the transport
        cannot tell (app.transports.depth_unknown_reason says why)."""
        kind = transports.family(self.broker_url)
        if kind not in ("redis", "amqp"):
            return dict.fromkeys(queues)

        def do():
            with self.app.connection_for_write() as conn:
                if kind == "amqp":
                    return {name: broker_queues.passive_queue_size(conn, self._on_broker(name))
                            for name in queues}
                channel = conn.default_channel
                return {name: broker_queues.queue_size(channel, self._on_broker(name))
                        for name in queues}
        return self.call(do, timeout)

    def purge(self, queues: list[str], timeout: float = 5.0) -> dict[str, int]:
        def do():
            with self.app.connection_for_write() as conn:
                channel = conn.default_channel
                return {name: broker_queues.purge_queue(channel, self._on_broker(name))
                        for name in queues}
        return self.call(do, timeout)

    def restore_unacked(self, queue: str, *, delivered_after: float | None = None,
                        delivered_before: float | None = None, timeout: float = 3.0) -> int:
        """Put back the unacked messages of `queue` (Redis only); returns how many.

        For a worker whose main process died holding messages: kombu would only
        restore them after the visibility timeout. Call it after the worker's
        whole process group is dead and before its replacement starts, so only
        messages of the dead worker (the queue's only local consumer) match.
        """
        if not is_redis_url(self.broker_url):
            return 0

        def do():
            with self.app.connection_for_write() as conn:
                channel = conn.default_channel
                return broker_queues.restore_unacked(channel, self._on_broker(queue),
                                                     delivered_after,
                                                     delivered_before)
        return self.call(do, timeout)

    def _on_broker(self, queue: str) -> str:
        return self.settings.broker_queue(queue)

    def close(self, timeout: float = 3.0) -> None:
        """Stop the broker thread, then release the app's broker pool and pidbox connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._calls.put(None)
            thread.join(timeout)
        if self._owns_app:
            try:
                self.app.close()
            except Exception as exc:  # a broker that is gone cannot be said goodbye to
                log.debug("closing the control app failed: %s", exc)

    # --- the dedicated thread ---------------------------------------------------------
    def call(self, fn: Callable[[], Any], timeout: float) -> Any:
        """Run `fn` on the broker thread; BrokerUnavailable on error or timeout."""
        if self._closed:
            raise BrokerUnavailable("the broker client is closed")
        self._ensure_thread()
        future: Future = Future()
        self._calls.put((fn, future))
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise BrokerUnavailable(f"the broker did not answer within {timeout:.1f}s") from None
        except BrokerUnavailable:
            raise
        except Exception as exc:
            raise BrokerUnavailable(f"broker error: {type(exc).__name__}: {exc}") from exc

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self.name,
                                                daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue  # the caller gave up before we got to it
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)
