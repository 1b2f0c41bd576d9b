"""Fair use of the job queues: no user can starve another.

Two halves:
- `SubmissionLimits` (in the request, before any upload is read): a per-user submission
  rate and a cap on the user's queued plus running jobs; past either, 429 with
  Retry-After and the API's JSON error.
- `FairQueue` (at dispatch): at most JOB_IN_FLIGHT_PER_USER jobs of one user are handed
  to Celery or the thread pool at a time; the rest are held in the store (queued, no
  mode) and released oldest first, one user after another (round robin), when a slot
  frees. The broker's FIFO queue therefore never holds more than a few jobs of any one
  user, so one user's 1,000 jobs do not stand in front of another user's one.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps

from flask import current_app
from flask_jwt_extended import current_user
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter, RateLimiter

from app.errors import APIError

log = logging.getLogger(__name__)

ACTIVE_RETRY_AFTER = 5  # s: a queued job of this user is likely to finish by then
HELD_SCAN_LIMIT = 100_000
HOLD_GRACE = 2.0  # s


class SubmissionLimits:
    """`admit(user)` or APIError(429). `strategy` returns the shared rate limiter (the
    app's limiter storage, so every HTTP process counts together); on its failure the
    count goes on in this process's memory."""

    def __init__(self, settings, store, strategy: Callable[[], RateLimiter],
                 clock: Callable[[], float] = time.time):
        self.rate = parse(settings.JOB_SUBMIT_RATE_LIMIT)
        self.max_active = settings.JOB_MAX_ACTIVE_PER_USER
        self.store = store
        self._strategy = strategy
        self._fallback = MovingWindowRateLimiter(MemoryStorage())
        self._clock = clock

    def _limiter(self) -> RateLimiter:
        try:
            limiter = self._strategy()
            limiter.test(self.rate, "job-submit", "probe")
            return limiter
        except Exception as exc:
            log.warning("job rate limit storage unavailable (%s); counting in memory", exc)
            return self._fallback

    def admit(self, user: str) -> None:
        active = active_jobs(self.store, user, self.max_active)
        if active >= self.max_active:
            raise APIError(429, "too_many_jobs",
                           f"you have {active} jobs queued or running; at most "
                           f"{self.max_active} at once", headers={
                               "Retry-After": str(ACTIVE_RETRY_AFTER)})
        limiter = self._limiter()
        if not limiter.hit(self.rate, "job-submit", user):
            reset, _remaining = limiter.get_window_stats(self.rate, "job-submit", user)
            wait = max(1, int(reset - self._clock() + 0.999))
            raise APIError(429, "rate_limited",
                           f"too many job submissions (limit {self.rate}); try again in "
                           f"{wait} s", headers={"Retry-After": str(wait)})


def active_jobs(store, user: str, cap: int) -> int:
    """The user's queued plus running jobs, counted up to `cap` + 1 (cheap either way)."""
    return sum(len(store.list(owner=user, status=status, limit=cap + 1))
               for status in ("queued", "running"))


class FairQueue:
    """Decides whether a job may be dispatched now, and which held jobs go next."""

    def __init__(self, settings, store, *, grace: float = HOLD_GRACE):
        self.grace = grace
        self.in_flight = settings.job_in_flight_per_user
        self.scan = settings.JOB_MAX_ACTIVE_PER_USER + 1
        self.store = store

    def dispatched(self, user: str) -> int:
        """The user's jobs handed to Celery or threads and not finished."""
        queued = self.store.list(owner=user, status="queued", limit=self.scan)
        running = self.store.list(owner=user, status="running", limit=self.in_flight + 1)
        return sum(1 for job in queued if job.mode) + len(running)

    def may_dispatch(self, job) -> bool:
        return self.dispatched(job.owner) < self.in_flight

    def releasable(self) -> list:
        """Held jobs that fit now: per user oldest first, users taken in turns."""
        # A job younger than the grace is being dispatched by the request that made it.
        ripe = time.time() - self.grace
        held = [job for job in self.store.list(status="queued", limit=HELD_SCAN_LIMIT)
                if not job.mode and job.created_at < ripe]
        by_user: OrderedDict[str, list] = OrderedDict()
        for job in sorted(held, key=lambda j: (j.created_at, j.id)):
            by_user.setdefault(job.owner, []).append(job)
        slots = {user: self.in_flight - self.dispatched(user) for user in by_user}
        order = []
        while any(by_user.values()):
            for user, jobs in by_user.items():
                if jobs and slots[user] > 0:
                    order.append(jobs.pop(0))
                    slots[user] -= 1
                elif jobs:
                    jobs.clear()  # no slot for this user this round
        return order


LIMITS_KEY = "scm.submission_limits"


def submission_limits(app) -> SubmissionLimits:
    limits = app.extensions.get(LIMITS_KEY)
    if limits is None:
        from app.extensions import limiter
        from app.jobs.job_services import services

        # The configured storage itself, not Flask-Limiter's current choice: that may be
        # its per-process fallback, and every HTTP process must count together.
        strategy = MovingWindowRateLimiter(limiter(app).storage)
        limits = app.extensions.setdefault(LIMITS_KEY, SubmissionLimits(
            app.config["SETTINGS"], services(app).store, lambda: strategy))
    return limits


def fair_use_checked(view):
    """For submit routes, under @jwt_required: admit the caller before reading uploads."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        submission_limits(current_app).admit(current_user.id)
        return view(*args, **kwargs)

    return wrapper
