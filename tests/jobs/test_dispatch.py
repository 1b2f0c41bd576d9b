"""Dispatcher: Celery while the broker answers and a worker can take the queue; threads
otherwise, including when a publish fails between the check and the send."""
from __future__ import annotations

import json

import redis

from app.jobs.dispatch import Dispatcher
from app.jobs.store import JobStore
from tests.conftest import free_port, make_settings
from tests.jobs.conftest import FakeMonitor


class RecordingPool:
    def __init__(self):
        self.submitted = []

    def submit(self, job_id):
        self.submitted.append(job_id)


def setup(tmp_path, broker_url, monitor, available=None):
    settings = make_settings(tmp_path, CELERY_BROKER_URL=broker_url)
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    pool = RecordingPool()
    dispatcher = Dispatcher(settings, store, pool, broker_monitor=monitor,
                            worker_available=available)
    job = store.create(owner="a", kind="sheets", params={}, queue="pdf_generation")
    return dispatcher, store, pool, job


def test_celery_when_broker_up(tmp_path, redis_server):
    dispatcher, store, pool, job = setup(tmp_path, redis_server.url, FakeMonitor(True))
    assert dispatcher.submit(job) == "celery"
    got = store.get(job.id)
    assert got.mode == "celery" and got.task_id and got.dispatched_at
    assert pool.submitted == []
    messages = redis.Redis.from_url(redis_server.url).lrange("pdf_generation", 0, -1)
    assert len(messages) == 1
    headers = json.loads(messages[0])["headers"]
    assert headers["task"] == "scm.generate_sheets" and headers["id"] == got.task_id


def test_threads_when_broker_down(tmp_path):
    dispatcher, store, pool, job = setup(tmp_path, f"redis://127.0.0.1:{free_port()}/0",
                                         FakeMonitor(False))
    assert dispatcher.submit(job) == "threads"
    got = store.get(job.id)
    assert got.mode == "threads" and got.worker_node.startswith("threads@")
    assert pool.submitted == [job.id]


def test_threads_when_no_worker_takes_the_queue(tmp_path, redis_server):
    asked = []
    dispatcher, store, pool, job = setup(
        tmp_path, redis_server.url, FakeMonitor(True),
        available=lambda queue: asked.append(queue) or False)
    assert dispatcher.submit(job) == "threads" and asked == ["pdf_generation"]


def test_failed_publish_falls_back_to_threads(tmp_path):
    # The monitor still believes the broker is up, but nothing listens there.
    dispatcher, store, pool, job = setup(tmp_path, f"redis://127.0.0.1:{free_port()}/0",
                                         FakeMonitor(True))
    assert dispatcher.submit(job) == "threads"
    assert store.get(job.id).mode == "threads" and pool.submitted == [job.id]


def test_no_broker_configured_means_threads(tmp_path):
    settings = make_settings(tmp_path)
    settings.ensure_dirs()
    assert settings.broker_url is None
    store = JobStore(settings.database_url)
    pool = RecordingPool()
    dispatcher = Dispatcher(settings, store, pool, broker_monitor=None)
    job = store.create(owner="a", kind="calibration", params={}, queue="default")
    assert dispatcher.submit(job) == "threads" and dispatcher.celery is None


def test_finished_jobs_are_not_sent_again(tmp_path):
    dispatcher, store, pool, job = setup(tmp_path, f"redis://127.0.0.1:{free_port()}/0",
                                         FakeMonitor(False))
    claim = store.claim(job.id, worker="w")
    store.succeed(job.id, claim.token, output_path="/x.pdf")
    dispatcher.submit(job.id)
    assert pool.submitted == []
