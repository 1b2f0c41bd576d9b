"""Login throttling per client address and per account, without locking anyone out.

A plain per-address limit refuses everyone behind one NAT or proxy once an attacker there
has spent it, right password included; a plain per-account limit lets anyone lock any
account. Here only failed logins count (per address and per account name). Past either
limit an attempt is not refused outright: it is checked after a short delay, a right
password gets in and a wrong one is answered 429. Held attempts are few at once per
process (a semaphore), so throttled guessing costs the server little CPU and few
threads, and its rate stays bounded (concurrency x processes per delay).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, RateLimiter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThrottlePolicy:
    address_limit: str
    account_limit: str
    delay: float
    concurrency: int

    @classmethod
    def from_settings(cls, settings) -> ThrottlePolicy:
        return cls(settings.LOGIN_RATE_LIMIT, settings.LOGIN_ACCOUNT_RATE_LIMIT,
                   settings.LOGIN_THROTTLE_DELAY, settings.LOGIN_THROTTLE_CONCURRENCY)


class LoginThrottle:
    """Counts failures; says whether an attempt must wait; holds the waiting ones.

    `strategy` returns the shared (e.g. Redis) rate limiter; when it fails, counting goes
    on in this process's memory so a storage outage never turns login into a 500.
    """

    def __init__(self, policy: ThrottlePolicy, strategy: Callable[[], RateLimiter],
                 sleep: Callable[[float], None] = time.sleep):
        self.policy = policy
        self._strategy = strategy
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self._sleep = sleep
        self._held = threading.BoundedSemaphore(policy.concurrency)
        self._limits: tuple[tuple[str, RateLimitItem], ...] = (
            ("address", parse(policy.address_limit)),
            ("account", parse(policy.account_limit)),
        )

    def _keys(self, address: str, account: str):
        values = {"address": address, "account": account}
        for scope, item in self._limits:
            yield item, ("login-failures", scope, values[scope])

    def _call(self, method: str, item: RateLimitItem, key: tuple[str, ...]) -> bool:
        try:
            return getattr(self._strategy(), method)(item, *key)
        except Exception as exc:  # storage down: count here until it is back
            log.warning("login throttle storage unavailable (%s); counting in memory", exc)
            return getattr(self._fallback, method)(item, *key)

    def over_limit(self, address: str, account: str) -> bool:
        return any(not self._call("test", item, key) for item, key in self._keys(address, account))

    def record_failure(self, address: str, account: str) -> None:
        for item, key in self._keys(address, account):
            self._call("hit", item, key)

    @contextmanager
    def held(self) -> Iterator[bool]:
        """One of the few held slots, entered after the delay; False when none frees up.

        The caller checks the password inside, so the hash also counts against the slot.
        """
        if not self._held.acquire(timeout=max(self.policy.delay, 0.05)):
            yield False
            return
        try:
            self._sleep(self.policy.delay)
            yield True
        finally:
            self._held.release()

    @property
    def retry_after(self) -> int:
        return max(1, round(self.policy.delay))
