"""SQS as the broker (moto's server stands in for SQS: none can run here; see conftest).

SQS has no broadcast, so Celery's ping never reaches a worker: the manager judges
responsiveness by canary tasks on each worker's own queue. Workers must reach RUNNING,
health must say healthy and mode celery, jobs run, and a SIGKILLed worker loses no job.
"""
from __future__ import annotations

import os
import signal

import pytest

from tests.brokers.conftest import scrape, sqs_settings
from tests.conftest import wait_for
from tests.supervisor.conftest import all_running, worker
from tests.supervisor.test_jobs_integration import JobSystem, valid_pdf

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_workers_reach_running_and_health_is_healthy(tmp_path, moto_sqs, redis_server,
                                                     managers, client_app):
    settings = sqs_settings(tmp_path, moto_sqs, redis_server.url,
                            CELERY_QUEUES="default,pdf_offset")
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 2), 60, 0.2, "both workers RUNNING on SQS")
    # The broker monitor's probe is an HTTP call to moto: on a loaded machine one may time
    # out and flip the mode for a moment, so health is waited for, not read once.
    health = wait_for(lambda: (h := manager.health())["status"] == "healthy" and h, 20, 0.2,
                      "healthy")
    assert health["mode"] == "celery" and health["workers"] == {"running": 2, "expected": 2}
    status = manager.status()
    assert status["broker"]["transport"] == "sqs"
    assert status["broker"]["responsiveness"] == "canary"
    assert status["queues"] == {"default": None, "pdf_offset": None}
    reason = status["broker"]["depth_unknown_reason"]
    assert "ApproximateNumberOfMessages" in reason
    found = scrape(manager)
    assert found[("scm_queue_depth_unknown", (("queue", "default"), ("reason", reason)))] == 1
    assert not any(name == "scm_queue_depth" for name, _labels in found)
    trips = wait_for(lambda: status["broker"]["canary_round_trip_seconds"]
                     or manager.status()["broker"]["canary_round_trip_seconds"], 10)
    assert set(trips) <= {w["name"] for w in status["workers"]}
    assert all(0 < seconds < 10 for seconds in trips.values())

    app = client_app(settings)
    result = app.send_task("sup.whoami", queue="pdf_offset")
    assert result.get(timeout=30).startswith("pdf_offset@")


def test_jobs_succeed_and_a_sigkilled_worker_loses_none(tmp_path, moto_sqs, redis_server,
                                                        managers):
    """On SQS a killed worker's message stays invisible for the visibility timeout; the
    manager's worker-lost hook re-sends the job from the job store at once, and the late
    redelivery finds it done (one completion)."""
    settings = sqs_settings(tmp_path, moto_sqs, redis_server.url, CELERY_QUEUES="default",
                            CELERY_CONCURRENCY=1)
    system = JobSystem(settings, managers)
    wait_for(lambda: all_running(system.manager, 1), 60, 0.2, "worker RUNNING on SQS")
    quick, mode = system.submit()
    assert mode == "celery"
    done = system.finished(quick.id, 40)
    assert done.status == "succeeded" and done.mode == "celery", done.error
    assert done.progress == 1.0

    job, mode = system.submit(slow=3)
    assert mode == "celery"
    wait_for(lambda: system.store.get(job.id).status == "running", 30, 0.05, "job running")
    os.kill(worker(system.manager.status(), "default")["pid"], signal.SIGKILL)
    done = system.finished(job.id, 60)
    assert done.status == "succeeded", done.error
    assert done.attempts == 2
    assert valid_pdf(system.settings.in_storage(done.output_path))
    assert system.completions() == [quick.id, job.id]
