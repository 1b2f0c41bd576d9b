"""Lost messages are re-sent once, purged ones never (app/jobs/lost_messages.py), on a
real redis-server: a restart without data loses messages, a `celery purge` removes them."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from app.jobs.dispatch import Dispatcher
from app.jobs.lost_messages import LOST_TWICE, PURGED_BY_HAND, RESENT_LOST
from app.jobs.reconciler import Reconciler
from app.jobs.store import JobStore
from tests.conftest import make_settings, wait_for
from tests.jobs.conftest import ROOT, FakeMonitor, worker_env

pytestmark = [pytest.mark.redis, pytest.mark.backends("sqlite"), pytest.mark.timeout(60)]
LOST_AFTER = 1.0


class RecordingPool:
    def __init__(self):
        self.submitted = []

    def submit(self, job_id):
        self.submitted.append(job_id)


@pytest.fixture
def world(tmp_path, redis_server):
    settings = make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url)
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    dispatcher = Dispatcher(settings, store, RecordingPool(), broker_monitor=FakeMonitor(True))
    reconciler = Reconciler(settings, store, dispatcher, lost_after=LOST_AFTER,
                            inspect_timeout=0.3, cleanup_interval=3600)
    yield settings, store, dispatcher, reconciler
    dispatcher.close()


def submit_two(store, dispatcher):
    jobs = [store.create(owner="a", kind="calibration", params={}, queue="default")
            for _ in range(2)]
    assert [dispatcher.submit(job) for job in jobs] == ["celery", "celery"]
    return jobs


def test_a_hand_purge_is_never_undone(world, redis_server):
    settings, store, dispatcher, reconciler = world
    # The broker has been up since well before the publish: Redis tells its uptime in whole
    # seconds, so a purge within two seconds of its start would count as a loss.
    time.sleep(2.1)
    jobs = submit_two(store, dispatcher)
    env = worker_env(settings, redis_server.url)
    purge = subprocess.run([sys.executable, "-m", "celery", "-A", "celery_app", "purge", "-f",
                            "-Q", "default"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=30)
    assert purge.returncode == 0 and "2 messages" in purge.stdout, purge.stdout + purge.stderr
    time.sleep(LOST_AFTER + 0.2)
    assert reconciler.tick()["lost"] == []
    for job in jobs:
        got = store.get(job.id)
        assert got.status == "failed" and got.error == PURGED_BY_HAND
    assert reconciler.tick()["lost"] == []  # and nothing is sent later either


def test_messages_lost_by_a_restart_are_resent_once_then_fail(world, redis_server):
    _settings, store, dispatcher, reconciler = world
    jobs = submit_two(store, dispatcher)
    first_tasks = {store.get(job.id).task_id for job in jobs}
    redis_server.stop()   # no persistence: its data is gone
    redis_server.start()
    time.sleep(LOST_AFTER + 0.2)
    # The first sweeps after a restart may find the inspect connection broken: retried.
    sent = wait_for(lambda: reconciler.tick()["lost"], 15, 0.3, "a sweep that re-sends")
    assert sorted(sent) == sorted(job.id for job in jobs)
    for job in jobs:
        got = store.get(job.id)
        assert got.status == "queued" and got.message == RESENT_LOST
        assert got.task_id not in first_tasks
    client = dispatcher.celery.connection_for_write().default_channel.client
    assert client.llen("default") == 2   # really sent again

    redis_server.stop()   # lost a second time
    redis_server.start()
    time.sleep(LOST_AFTER + 0.2)
    wait_for(lambda: reconciler.tick()["lost"] == [] and all(
        store.get(job.id).finished for job in jobs), 15, 0.3, "both jobs failed")
    assert {store.get(job.id).error for job in jobs} == {LOST_TWICE}
