"""RabbitMQ as the broker (a real server on 127.0.0.1:5672, a vhost of our own per module):
queue depths in status and metrics (passive queue_declare, no management plugin), stall
detection, a SIGKILLed worker's job redelivered and completed once, and purges (the admin
API and `celery purge` by hand) that are never undone."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from app.jobs.lost_messages import PURGED_BY_HAND
from app.jobs.reconciler import PURGED_ERROR
from tests.brokers.conftest import scrape
from tests.conftest import make_settings, wait_for
from tests.jobs.conftest import ROOT
from tests.supervisor.conftest import all_running, worker
from tests.supervisor.test_jobs_integration import JobSystem, valid_pdf

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


def amqp_settings(tmp_path, vhost_url: str, result_backend: str, **overrides):
    values = {"CELERY_BROKER_URL": vhost_url, "CELERY_RESULT_BACKEND": result_backend,
              "START_CELERY_WORKER": True, "CELERY_HEALTH_CHECK_INTERVAL": 1.0,
              "CELERY_RESTART_DELAY": 0.2, "CELERY_STOP_TIMEOUT": 10,
              "CELERY_QUEUES": "default", "CELERY_CONCURRENCY": 1}
    values.update(overrides)
    return make_settings(tmp_path, **values)


def test_depths_in_status_and_metrics_and_a_stalled_consumer_is_restarted(
        tmp_path, rabbit_vhost, redis_server, managers, client_app):
    settings = amqp_settings(tmp_path, rabbit_vhost, redis_server.url)
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 1), 40, 0.1, "worker running")
    status = manager.status()
    assert status["broker"]["transport"] == "amqp"
    assert status["broker"]["responsiveness"] == "ping"
    assert status["broker"]["depth_unknown_reason"] is None
    assert status["queues"] == {"default": 0}

    name = f"default@{socket.gethostname()}"
    old_pid = worker(status, "default")["pid"]
    client = client_app(settings)
    # Alive and answering pings, but no longer consuming (celery#8030's symptom).
    replies = client.control.cancel_consumer("default", destination=[name], reply=True,
                                             timeout=5)
    assert replies and name in replies[0]
    results = [client.send_task("sup.whoami", queue="default") for _ in range(3)]
    wait_for(lambda: manager.status()["queues"]["default"] == 3, 10, 0.1, "depth 3")
    assert scrape(manager)[("scm_queue_depth", (("queue", "default"),))] == 3

    wait_for(lambda: worker(manager.status(), "default")["pid"] not in (None, old_pid),
             30, 0.1, "stalled worker replaced")
    for result in results:
        assert result.get(timeout=20) == name
    w = worker(manager.status(), "default")
    assert w["restarts_by_reason"]["hang"] == 1 and w["last_error"].startswith("stalled")
    wait_for(lambda: manager.status()["queues"]["default"] == 0, 10, 0.1, "drained")


def test_sigkilled_worker_job_is_redelivered_and_completes_once(
        tmp_path, rabbit_vhost, redis_server, managers):
    system = JobSystem(amqp_settings(tmp_path, rabbit_vhost, redis_server.url), managers)
    wait_for(lambda: all_running(system.manager, 1), 40, 0.1, "worker running")
    job, mode = system.submit(slow=3)
    assert mode == "celery"
    wait_for(lambda: system.store.get(job.id).status == "running", 20, 0.05, "job running")
    os.kill(worker(system.manager.status(), "default")["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    done = system.finished(job.id, 40)
    assert done.status == "succeeded", done.error
    assert time.monotonic() - killed_at < 20
    assert valid_pdf(system.settings.in_storage(done.output_path))
    time.sleep(2.0)   # RabbitMQ's own redelivery must not complete it again
    assert system.completions() == [job.id]


def test_purges_by_api_and_by_hand_are_never_undone(tmp_path, rabbit_vhost, redis_server,
                                                    managers):
    settings = amqp_settings(tmp_path, rabbit_vhost, redis_server.url, CELERY_LOST_AFTER=1)
    system = JobSystem(settings, managers)
    wait_for(lambda: all_running(system.manager, 1), 40, 0.1, "worker running")
    system.manager.stop(timeout=10)   # nobody consumes: the messages wait in the queue
    system.dispatcher.worker_available = lambda queue: True  # publish to Celery anyway

    by_api = [system.submit()[0] for _ in range(2)]
    wait_for(lambda: system.manager.status()["queues"]["default"] == 2, 10, 0.1, "2 waiting")
    started = time.time()
    purged = system.manager.purge(["default"])["purged"]
    assert purged == {"default": 2}
    counts = system.reconciler.fail_purged(["default"], purge_started=started,
                                           purge_finished=time.time())
    assert counts == {"default": 2}
    assert {system.store.get(job.id).error for job in by_api} == {PURGED_ERROR}

    by_hand = [system.submit()[0] for _ in range(2)]
    wait_for(lambda: system.manager.status()["queues"]["default"] == 2, 10, 0.1, "2 waiting")
    from tests.jobs.conftest import worker_env
    env = worker_env(settings, rabbit_vhost)
    out = subprocess.run([sys.executable, "-m", "celery", "-A", "celery_app", "purge", "-f",
                          "-Q", "default"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "2 messages" in out.stdout, out.stdout + out.stderr
    # Two sightings CELERY_LOST_AFTER apart (AMQP shows a count, not message ids).
    wait_for(lambda: system.reconciler.tick()["lost"] == [] and all(
        system.store.get(job.id).finished for job in by_hand), 20, 0.5, "hand purge seen")
    assert {system.store.get(job.id).error for job in by_hand} == {PURGED_BY_HAND}
    assert system.manager.status()["queues"]["default"] == 0   # nothing was re-sent
