"""Is the broker reachable? A quick, cached, thread-safe answer.

Redis brokers (redis://, rediss://, redis+socket://) get a raw PING with short
socket timeouts and no client-side retries; other brokers a kombu connect with
a short timeout. The answer is cached for `ttl` seconds and only one thread
probes at a time (the others read the cache), so `is_up()` never blocks longer
than the timeout. Hysteresis: `fall_after` failed probes in a row to declare
the broker down (one lost packet does not flip the whole app to threads),
`rise_after` good ones to declare it up again.

One monitor per broker URL per process (`monitor_for`): the dispatcher, the manager
and the manager handle all read the same state instead of each pinging the broker.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import redis
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.urls import mask_url

REDIS_SCHEMES = ("redis", "rediss", "redis+socket", "unix")


def is_redis_url(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme in REDIS_SCHEMES


def redis_client_for(url: str, timeout: float) -> redis.Redis:
    """A redis-py client for a Celery/kombu Redis URL, failing fast (no retries)."""
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout,
                   "retry": Retry(NoBackoff(), 0),
                   "health_check_interval": 0, "socket_keepalive": True}
    parts = urlsplit(url)
    if parts.scheme == "redis+socket":
        path = url.split("://", 1)[1].split("?", 1)[0]
        return redis.Redis(unix_socket_path=path, **options)
    return redis.Redis.from_url(url, **options)


class BrokerMonitor:
    def __init__(self, url: str | None, timeout: float = 0.5, *, ttl: float = 1.0,
                 fall_after: int = 2, rise_after: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 probe: Callable[[], None] | None = None,
                 transport_options: dict | None = None):
        self.url = url
        # The operator's CELERY_BROKER_TRANSPORT_OPTIONS (SQS region, predefined queues...):
        # without them a probe may ask the wrong endpoint or need rights it lacks.
        self.transport_options = dict(transport_options or {})
        self.timeout = timeout
        self.ttl = ttl
        self.fall_after = max(1, fall_after)
        self.rise_after = max(1, rise_after)
        self._clock = clock
        self._probe_fn = probe or self._default_probe()
        self._probe_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._reachable: bool | None = None
        self._since: float | None = None          # wall clock of the last flip
        self._checked: float | None = None        # monotonic time of the last probe
        self._last_error: str | None = None
        self._streak = 0                           # probes in a row that disagree with the state
        self._recovered: float | None = None       # wall clock of the last down -> up flip
        self._client: redis.Redis | None = None

    # --- public -------------------------------------------------------------
    def is_up(self) -> bool:
        """Cached reachability; probes when the cache is older than `ttl`."""
        if self._stale():
            self.refresh()
        return bool(self._reachable)

    def refresh(self) -> bool:
        """Probe now, unless another thread already is (then return the cached state)."""
        if not self._probe_lock.acquire(blocking=False):
            if self._reachable is None:
                # Nothing known yet: the probe in flight is the answer, worth its timeout.
                if self._probe_lock.acquire(timeout=self.timeout * 2 + 0.5):
                    self._probe_lock.release()
            return bool(self._reachable)
        try:
            ok, error = self._probe_once()
            self._record(ok, error)
        finally:
            self._probe_lock.release()
        return bool(self._reachable)

    def check_now(self) -> bool:
        """Probe now (waiting for a probe in flight) and return this probe's raw result.

        For deciding whether a missed worker ping is the worker's fault: a frozen
        broker makes pings time out before the hysteresis has flipped the state.
        """
        if not self._probe_lock.acquire(timeout=self.timeout * 2 + 1.0):
            return False
        try:
            ok, error = self._probe_once()
            self._record(ok, error)
        finally:
            self._probe_lock.release()
        return ok

    def recovered_at(self) -> float | None:
        """Wall-clock time the broker last came back after being down (None: never was down)."""
        with self._state_lock:
            return self._recovered

    def snapshot(self) -> dict:
        with self._state_lock:
            return {"reachable": bool(self._reachable), "since": self._since,
                    "url": mask_url(self.url), "last_error": self._last_error,
                    "checked": self._reachable is not None}

    @property
    def known(self) -> bool:
        return self._reachable is not None

    def close(self) -> None:
        self._drop_client()

    # --- internals ------------------------------------------------------------
    def _stale(self) -> bool:
        checked = self._checked
        return checked is None or self._clock() - checked >= self.ttl

    def _probe_once(self) -> tuple[bool, str | None]:
        if not self.url:
            return False, "no broker configured"
        try:
            self._probe_fn()
            return True, None
        except Exception as exc:  # any failure means "not usable now"
            self._drop_client()
            return False, f"{type(exc).__name__}: {exc}"[:300]

    def _record(self, ok: bool, error: str | None) -> None:
        with self._state_lock:
            self._checked = self._clock()
            if not ok:
                self._last_error = error
            if self._reachable is None:
                self._flip(ok)
                return
            if ok == self._reachable:
                self._streak = 0
                return
            self._streak += 1
            if self._streak >= (self.rise_after if ok else self.fall_after):
                self._flip(ok)

    def _flip(self, ok: bool) -> None:
        if ok and self._reachable is False:
            self._recovered = time.time()
        self._reachable = ok
        self._since = time.time()
        self._streak = 0

    def _default_probe(self) -> Callable[[], None]:
        if is_redis_url(self.url):
            return self._redis_ping
        return self._kombu_connect

    def _redis_ping(self) -> None:
        if self._client is None:
            self._client = redis_client_for(self._configured_url(), self.timeout)
        if not self._client.ping():
            raise ConnectionError("PING was not answered with PONG")

    def _kombu_connect(self) -> None:
        with Connection(self._configured_url(), connect_timeout=self.timeout,
                        transport_options={**self.transport_options, "max_retries": 0}) as conn:
            # The stub says int; kombu adds it to time() (retry_over_time): seconds, 0.5 too.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0,
                                   timeout=self.timeout)  # type: ignore[arg-type]

    def _configured_url(self) -> str:
        if not self.url:  # _probe_once probes only a configured broker
            raise ConnectionError("no broker configured")
        return self.url

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass


_shared: dict[str, BrokerMonitor] = {}
_shared_pid: int | None = None
_shared_lock = threading.Lock()


def monitor_for(url: str | None, transport_options: dict | None = None) -> BrokerMonitor:
    """This process's one monitor for `url` (rebuilt after a fork: a redis client must
    not be shared with a parent)."""
    global _shared_pid
    key = url or ""
    with _shared_lock:
        if _shared_pid != os.getpid():
            _shared.clear()
            _shared_pid = os.getpid()
        monitor = _shared.get(key)
        if monitor is None:
            monitor = _shared[key] = BrokerMonitor(url, timeout=0.5,
                                                   transport_options=transport_options)
        return monitor
