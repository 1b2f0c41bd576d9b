"""Fair use in process: held jobs, round-robin release, 429s with Retry-After."""
from __future__ import annotations

import time

import pytest
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.errors import APIError
from app.jobs.fair_use import FairQueue, SubmissionLimits
from tests.conftest import make_settings


def _jobs(store, owner, n):
    return [store.create(owner=owner, kind="calibration", params={}, queue="default")
            for _ in range(n)]


def test_one_users_jobs_do_not_stand_in_front_of_anothers(store, tmp_path):
    queue = FairQueue(make_settings(tmp_path, JOB_IN_FLIGHT_PER_USER=2), store, grace=0)
    alice = _jobs(store, "alice", 10)
    time.sleep(0.01)
    bob = _jobs(store, "bob", 1)
    order = [job.owner for job in queue.releasable()]
    assert order == ["alice", "bob", "alice"]  # in turns, each user to its limit
    for job in alice[:2]:
        store.set_dispatch(job.id, mode="celery", task_id="t")
    assert [job.id for job in queue.releasable()] == [bob[0].id]
    assert not queue.may_dispatch(alice[5]) and queue.may_dispatch(bob[0])


def test_submission_rate_and_active_cap_answer_429(store, tmp_path):
    settings = make_settings(tmp_path, JOB_SUBMIT_RATE_LIMIT="3 per minute",
                             JOB_MAX_ACTIVE_PER_USER=5)
    shared = MovingWindowRateLimiter(MemoryStorage())
    limits = SubmissionLimits(settings, store, lambda: shared)
    for _ in range(3):
        limits.admit("carol")
    with pytest.raises(APIError) as rate:
        limits.admit("carol")
    assert rate.value.status == 429 and rate.value.code == "rate_limited"
    assert int(rate.value.headers["Retry-After"]) >= 1
    limits.admit("dave")  # another user has its own budget
    _jobs(store, "erin", 5)
    with pytest.raises(APIError) as cap:
        limits.admit("erin")
    assert cap.value.code == "too_many_jobs" and cap.value.headers["Retry-After"]
