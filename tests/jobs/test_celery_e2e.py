"""Real Celery: a redis-server and worker subprocesses run every task type end to end,
retry transient failures, fail bad input at once, and recover a SIGKILLed worker's job."""
from __future__ import annotations

import shutil
import time

import pypdfium2
import pytest

from app.broker import BrokerMonitor
from app.celery_config import TASK_CLEANUP, TASK_HEALTH
from app.jobs.dispatch import Dispatcher
from app.jobs.fallback import ThreadFallback
from app.jobs.reconciler import Reconciler
from app.jobs.store import JobStore
from tests.conftest import make_settings, wait_for
from tests.jobs.conftest import png_bytes

pytestmark = pytest.mark.timeout(120)

SHEET_PARAMS = {"card_size": "standard", "paper_size": "letter", "only_fronts": False,
                "crop": None, "extend_corners": 0, "ppi": 300, "quality": 100, "skip": [],
                "name": "e2e"}


class System:
    def __init__(self, settings):
        settings.ensure_dirs()
        self.settings = settings
        self.store = JobStore(settings.database_url)
        self.fallback = ThreadFallback(settings, self.store)
        self.monitor = BrokerMonitor(settings.broker_url)
        self.dispatcher = Dispatcher(settings, self.store, self.fallback,
                                     broker_monitor=self.monitor)

    def submit(self, kind, params, queue, files=None):
        job = self.store.create(owner="alice", kind=kind, params=params, queue=queue)
        for relative, data in (files or {}).items():
            path = self.settings.uploads_dir / job.id / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return job, self.dispatcher.submit(job)

    def wait_finished(self, job_id, timeout=30.0):
        return wait_for(lambda: (j := self.store.get(job_id)).finished and j, timeout,
                        message=f"job {job_id} to finish")


def pdf_pages(path) -> int:
    pdf = pypdfium2.PdfDocument(str(path))
    try:
        return len(pdf)
    finally:
        pdf.close()


@pytest.mark.redis
def test_every_task_type_runs_on_its_queue(tmp_path, redis_server, celery_workers):
    system = System(make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url))
    workers = {queue: celery_workers(system.settings, redis_server.url, queue, wait=False)
               for queue in ("pdf_generation", "pdf_offset", "default")}
    for worker in workers.values():
        worker.wait_ready()

    fronts = {f"fronts/card{i}.png": png_bytes((20 * i, 80, 160)) for i in range(10)}
    fronts["back/back.png"] = png_bytes((0, 0, 0))
    sheets, mode = system.submit("sheets", SHEET_PARAMS, "pdf_generation", fronts)
    assert mode == "celery"
    done = system.wait_finished(sheets.id)
    assert done.status == "succeeded", done.error
    assert done.mode == "celery" and done.worker.startswith("pdf_generation@")
    assert done.progress == 1.0 and "2 sheet(s)" in done.message
    sheets_pdf = system.settings.in_storage(done.output_path)
    assert pdf_pages(sheets_pdf) == 4  # 10 cards on 8 slots: 2 sheets, fronts + backs

    offset, mode = system.submit("offset", {"x": 12, "y": -7}, "pdf_offset",
                                 {"input.pdf": sheets_pdf.read_bytes()})
    calibration, _ = system.submit("calibration", {"paper_size": "a4"}, "default")
    for job, queue, pages in ((offset, "pdf_offset", 4), (calibration, "default", 2)):
        finished = system.wait_finished(job.id)
        assert finished.status == "succeeded", finished.error
        assert finished.worker.startswith(f"{queue}@")
        assert pdf_pages(system.settings.in_storage(finished.output_path)) == pages

    health = system.dispatcher.celery.send_task(TASK_HEALTH).get(timeout=15)
    assert health["ok"] and health["node"].startswith("default@")
    cleaned = system.dispatcher.celery.send_task(TASK_CLEANUP).get(timeout=15)
    assert set(cleaned) == {"outputs", "uploads", "orphans", "records"}


@pytest.mark.redis
def test_transient_failures_retry_and_bad_input_fails_at_once(tmp_path, redis_server,
                                                             celery_workers):
    system = System(make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url))
    celery_workers(system.settings, redis_server.url, "default",
                   app_module="tests.jobs.faulty_celery_app")

    flaky, mode = system.submit("calibration", {"paper_size": "letter",
                                                "test_transient_failures": 2}, "default")
    bogus, _ = system.submit("calibration", {"paper_size": "bogus"}, "default")
    assert mode == "celery"

    failed = system.wait_finished(bogus.id, timeout=20)
    assert failed.status == "failed" and "unknown paper size 'bogus'" in failed.error
    assert failed.attempts == 1
    result = system.dispatcher.celery.AsyncResult(failed.task_id)
    wait_for(lambda: result.state == "FAILURE", 10, message="task state FAILURE")

    done = system.wait_finished(flaky.id, timeout=40)
    assert done.status == "succeeded", done.error
    assert done.attempts == 3  # two injected OSErrors, then success


@pytest.mark.redis
@pytest.mark.backends("sqlite", "postgresql")  # the lease fence with real workers
def test_sigkilled_worker_job_completes_once(tmp_path, redis_server, celery_workers):
    settings = make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url)
    system = System(settings)
    reconciler = Reconciler(settings, system.store, system.dispatcher, inspect_timeout=0.5)
    worker = celery_workers(settings, redis_server.url, "default",
                            app_module="tests.jobs.faulty_celery_app")
    job, mode = system.submit("calibration", {"paper_size": "letter", "test_slow_seconds": 4},
                              "default")
    assert mode == "celery"
    wait_for(lambda: system.store.get(job.id).status == "running", 20, message="job running")
    # Progress travels both ways: task state in the result backend, and the store.
    task = system.dispatcher.celery.AsyncResult(system.store.get(job.id).task_id)
    wait_for(lambda: task.state == "PROGRESS" and task.info["progress"] > 0, 10,
             message="PROGRESS task state")
    assert task.info["job_id"] == job.id
    wait_for(lambda: system.store.get(job.id).progress > 0, 10, message="stored progress")

    worker.kill()
    killed_at = time.monotonic()
    replacement = celery_workers(settings, redis_server.url, "default", name="default",
                                 app_module="tests.jobs.faulty_celery_app")
    sent = reconciler.redispatch_worker_jobs(worker.node, "default").result(15)
    assert sent == [job.id]

    done = system.wait_finished(job.id, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert done.status == "succeeded", done.error
    assert elapsed < 15, f"recovered after {elapsed:.1f} s"
    assert done.attempts == 2 and done.worker_node == replacement.node
    completions = (settings.INSTANCE_PATH / "completions.log").read_text().splitlines()
    assert [line.split()[0] for line in completions] == [job.id]
    assert pdf_pages(system.settings.in_storage(done.output_path)) == 2


@pytest.mark.redis
def test_broker_down_runs_in_threads(tmp_path, redis_server):
    settings = make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url)
    system = System(settings)
    redis_server.stop()
    wait_for(lambda: not system.monitor.refresh(), 5, 0.1, "monitor to see the broker down")
    job, mode = system.submit("calibration", {"paper_size": "letter"}, "default")
    assert mode == "threads"
    done = system.wait_finished(job.id, timeout=20)
    assert done.status == "succeeded" and done.mode == "threads"
    assert done.worker.startswith("threads@")
    assert pdf_pages(system.settings.in_storage(done.output_path)) == 2
    shutil.rmtree(settings.uploads_dir, ignore_errors=True)
