"""Issue 12, point 3: fair use against a real start_with_celery.py with a Celery worker."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from tests.conftest import wait_for
from tests.e2e.conftest import add_user

pytestmark = pytest.mark.slow

ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-11")


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_no_per_user_limit_1000_submissions_all_accepted(start_server):
    server = start_server("start_with_celery", EMBEDDED_REDIS="true", START_CELERY_WORKER="true",
                          CELERY_QUEUES="default", CELERY_CONCURRENCY="1",
                          JOB_SUBMIT_RATE_LIMIT="40 per minute", JOB_MAX_ACTIVE_PER_USER="25",
                          JOB_IN_FLIGHT_PER_USER="2")
    server.wait_healthy(90)
    server.wait_workers(1, timeout=90)
    add_user(server, *ALICE)
    add_user(server, *BOB)
    alice, bob = server.headers(*ALICE), server.headers(*BOB)
    url = server.url + "/api/jobs/calibration"

    def submit(_i):
        response = requests.post(url, headers=alice, json={"paper_size": "a4"}, timeout=60)
        return response.status_code, response.headers.get("Retry-After"), (
            response.json()["error"]["code"] if response.status_code == 429
            else response.json()["id"])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(submit, range(1000)))
    accepted = [value for code, _retry, value in results if code == 202]
    refused = [(retry, value) for code, retry, value in results if code == 429]
    assert len(accepted) + len(refused) == 1000
    assert 1 <= len(accepted) <= 40, len(accepted)           # the rate, at most
    assert len(refused) >= 960
    assert all(retry and int(retry) >= 1 for retry, _code in refused)
    assert {code for _retry, code in refused} <= {"rate_limited", "too_many_jobs"}
    assert "too_many_jobs" in {code for _retry, code in refused}  # the queue cap bit first

    # Another user's job starts within a few seconds, not behind alice's jobs.
    mine = server.post("/api/jobs/calibration", headers=bob, json={"paper_size": "a4"})
    assert mine.status_code == 202, mine.text
    submitted = time.time()

    def started():
        body = server.get(f"/api/jobs/{mine.json()['id']}", headers=bob).json()
        return body if body["started_at"] else None

    body = wait_for(started, 30, interval=0.2, message="bob's job to start")
    assert _when(body["started_at"]) - submitted < 5, body

    # Alice's held jobs are released in turn and all finish.
    def all_done():
        jobs = server.get("/api/jobs?limit=500", headers=alice).json()["jobs"]
        return all(job["status"] == "succeeded" for job in jobs) and len(jobs) == len(accepted)

    wait_for(all_done, 180, interval=1, message="alice's accepted jobs to finish")
    assert server.stop() == 0
