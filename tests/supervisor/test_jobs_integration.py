"""Job-level guarantees of the supervisor, with the real tasks and the jobs reconciler.

Workers load `tests.jobs.faulty_celery_app` (the real `celery_app` whose calibration job
can be slowed down and logs each completion), the reconciler is wired to the manager's
`on_worker_lost` exactly as the entry points wire it.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from tests.conftest import wait_for
from tests.supervisor.conftest import all_running, worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
FAULTY_APP = "tests.jobs.faulty_celery_app"


class JobSystem:
    """Store, dispatcher, thread fallback and reconciler around one manager."""

    def __init__(self, settings, managers):
        from app.jobs.dispatch import Dispatcher
        from app.jobs.fallback import ThreadFallback
        from app.jobs.reconciler import Reconciler
        from app.jobs.store import JobStore
        from app.supervisor.broker import BrokerMonitor

        settings.ensure_dirs()
        self.settings = settings
        self.store = JobStore(settings.database_url)
        self.fallback = ThreadFallback(settings, self.store)
        self.monitor = BrokerMonitor(settings.broker_url, timeout=0.5)
        holder = {}
        self.dispatcher = Dispatcher(settings, self.store, self.fallback,
                                     broker_monitor=self.monitor,
                                     worker_available=lambda q: holder["m"].worker_available(q))
        self.reconciler = Reconciler(settings, self.store, self.dispatcher, inspect_timeout=0.5)
        self.manager = holder["m"] = managers(
            settings, worker_app=FAULTY_APP,
            on_worker_lost=self.reconciler.redispatch_worker_jobs)

    def submit(self, slow: float = 0.0):
        params = {"paper_size": "letter"}
        if slow:
            params["test_slow_seconds"] = slow
        job = self.store.create(owner="alice", kind="calibration", params=params,
                                queue="default")
        return job, self.dispatcher.submit(job)

    def finished(self, job_id, timeout):
        return wait_for(lambda: (j := self.store.get(job_id)).finished and j, timeout, 0.05,
                        f"job {job_id} to finish")

    def completions(self) -> list[str]:
        path = self.settings.INSTANCE_PATH / "completions.log"
        return [line.split()[0] for line in path.read_text().splitlines()] \
            if path.exists() else []


def valid_pdf(path) -> bool:
    import pypdfium2
    pdf = pypdfium2.PdfDocument(str(path))
    try:
        return len(pdf) >= 1
    finally:
        pdf.close()


def test_job_of_a_sigkilled_worker_succeeds_once_within_15s(fast_settings, managers):
    system = JobSystem(fast_settings(CELERY_QUEUES="default", CELERY_CONCURRENCY=1), managers)
    wait_for(lambda: all_running(system.manager, 1), 30, 0.1, "worker running")
    job, mode = system.submit(slow=3)
    assert mode == "celery"
    wait_for(lambda: system.store.get(job.id).status == "running", 20, 0.05, "job running")
    os.kill(worker(system.manager.status(), "default")["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    done = system.finished(job.id, 30)
    assert done.status == "succeeded", done.error
    assert time.monotonic() - killed_at < 15
    assert valid_pdf(system.settings.in_storage(done.output_path))
    time.sleep(1.0)   # a second delivery (restore + re-dispatch) must not complete it again
    assert system.completions() == [job.id]


def test_warm_stop_lets_a_running_job_finish(fast_settings, managers):
    system = JobSystem(fast_settings(CELERY_QUEUES="default", CELERY_CONCURRENCY=1), managers)
    wait_for(lambda: all_running(system.manager, 1), 30, 0.1, "worker running")
    job, mode = system.submit(slow=2)
    assert mode == "celery"
    wait_for(lambda: system.store.get(job.id).status == "running", 20, 0.05, "job running")
    system.manager.stop(timeout=20)
    done = system.store.get(job.id)
    assert done.status == "succeeded", done.error
    assert system.completions() == [job.id]


def test_redis_down_runs_jobs_in_threads_and_back_on_celery(fast_settings, managers,
                                                            redis_server):
    system = JobSystem(fast_settings(CELERY_QUEUES="default", CELERY_CONCURRENCY=1), managers)
    wait_for(lambda: all_running(system.manager, 1), 30, 0.1, "worker running")
    redis_server.stop()
    wait_for(lambda: system.manager.health()["mode"] == "threads"
             and not system.monitor.refresh(), 5, 0.05, "threads mode")
    job, mode = system.submit()
    assert mode == "threads"
    done = system.finished(job.id, 30)
    assert done.status == "succeeded" and done.mode == "threads"

    redis_server.start()
    wait_for(lambda: system.manager.health()["status"] == "healthy"
             and system.monitor.refresh(), 20, 0.1, "celery mode again")
    job, mode = system.submit()
    assert mode == "celery"
    done = system.finished(job.id, 30)
    assert done.status == "succeeded" and done.mode == "celery"
    system.fallback.shutdown(wait=5)
