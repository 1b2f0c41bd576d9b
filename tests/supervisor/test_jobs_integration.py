"""Job-level guarantees of the supervisor, with the real tasks and the jobs reconciler.

Workers load `tests.jobs.faulty_celery_app` (the real `celery_app` whose calibration job
can be slowed down and logs each completion), the reconciler is wired to the manager's
`on_worker_lost` exactly as the entry points wire it.
"""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from app.cards.models import CalibrationOptions
from app.jobs import engine
from tests.conftest import wait_for
from tests.supervisor.conftest import all_running, worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]
FAULTY_APP = "tests.jobs.faulty_celery_app"
# Celery's line for a task that returned; the run that recorded the job's success says so.
COMPLETED = re.compile(r"succeeded in [\d.]+s: \{'job_id': '([0-9a-f]+)', 'status': 'succeeded', "
                       r"'output'")


class JobSystem:
    """Store, dispatcher, thread fallback and reconciler around one manager."""

    def __init__(self, settings, managers):
        from app.broker import BrokerMonitor
        from app.jobs.dispatch import Dispatcher
        from app.jobs.fallback import InProcessJobs, ThreadFallback
        from app.jobs.reconciler import Reconciler
        from app.jobs.store import JobStore

        settings.ensure_dirs()
        self.settings = settings
        self.store = JobStore(settings.database_url)
        # In this process, not in child processes: the test's slow job kind
        # (count_fallback_completions) exists only here.
        self.fallback = ThreadFallback(settings, self.store,
                                       jobs=InProcessJobs(settings, self.store))
        self.monitor = BrokerMonitor(settings.broker_url, timeout=0.5)
        holder = {}
        self.dispatcher = Dispatcher(settings, self.store, self.fallback,
                                     broker_monitor=self.monitor,
                                     worker_available=lambda q: holder["m"].worker_available(q))
        self.reconciler = Reconciler(settings, self.store, self.dispatcher, inspect_timeout=0.5)
        self.manager = holder["m"] = managers(
            settings, worker_app=FAULTY_APP,
            on_worker_lost=self.reconciler.redispatch_worker_jobs)

    def submit(self, slow: float = 0.0, queue: str = "default", owner: str = "alice"):
        params = {"paper_size": "letter"}
        if slow:
            params["test_slow_seconds"] = slow
        job = self.store.create(owner=owner, kind="calibration", params=params,
                                queue=queue)
        return job, self.dispatcher.submit(job)

    def count_fallback_completions(self, monkeypatch) -> list[str]:
        """Job ids the thread fallback ran to completion (the run that recorded it). The
        fallback runs in this process, so it gets the workers' test options too."""
        from app.jobs import runner
        done: list[str] = []
        monkeypatch.setitem(engine.KINDS, "calibration",
                            engine.JobKind(_SlowCalibration, _slow_calibration))
        real = runner.run_job

        def recording(*args, **kwargs):
            result = real(*args, **kwargs)
            if result.get("status") == "succeeded" and "output" in result:
                done.append(result["job_id"])
            return result
        monkeypatch.setattr(runner, "run_job", recording)
        return done

    def worker_completions(self) -> list[str]:
        """Job ids of Celery task runs that completed their job, from the worker logs
        only (each worker's own log file and its rotations)."""
        found = []
        for path in sorted(self.settings.logs_dir.glob("worker-*.log*")):
            found += COMPLETED.findall(path.read_text(errors="replace"))
        return found

    def finished(self, job_id, timeout):
        return wait_for(lambda: (j := self.store.get(job_id)).finished and j, timeout, 0.05,
                        f"job {job_id} to finish")

    def completions(self) -> list[str]:
        path = self.settings.INSTANCE_PATH / "completions.log"
        return [line.split()[0] for line in path.read_text().splitlines()] \
            if path.exists() else []


class _SlowCalibration(CalibrationOptions):
    test_slow_seconds: float = 0
    test_transient_failures: int = 0


_REAL_CALIBRATION = engine.KINDS["calibration"]


def _slow_calibration(inputs, params, output, progress, settings):
    """What tests.jobs.faulty_celery_app does in the workers, minus the fault injection."""
    time.sleep(params.test_slow_seconds)
    return _REAL_CALIBRATION.make(inputs, params, output, progress, settings)


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


def _kill_until_failed(manager, queue: str, timeout: float = 40) -> None:
    """SIGKILL the queue's worker, and each replacement, until the manager gives up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w = worker(manager.status(), queue)
        if w["state"] == "FAILED":
            return
        if w["pid"]:
            try:
                os.kill(w["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            wait_for(lambda: worker(manager.status(), queue)["pid"] != w["pid"], 10, 0.02)
        time.sleep(0.02)
    raise AssertionError(f"{queue} did not go FAILED")


def test_jobs_of_a_queue_whose_only_worker_failed_run_in_the_fallback(
        fast_settings, managers, monkeypatch):
    settings = fast_settings(CELERY_QUEUES="default", CELERY_CONCURRENCY=1,
                             CELERY_MAX_RESTARTS=1, CELERY_HEALTHY_AFTER=600,
                             CELERY_DRAIN_AFTER=2.0, CELERY_FAILED_RETRY_AFTER=600)
    system = JobSystem(settings, managers)
    in_threads = system.count_fallback_completions(monkeypatch)
    system.reconciler.start()
    try:
        wait_for(lambda: all_running(system.manager, 1), 30, 0.1, "worker running")
        busy, mode = system.submit(slow=3)
        assert mode == "celery"
        wait_for(lambda: system.store.get(busy.id).status == "running", 20, 0.05, "running")
        queued = [system.submit(owner=f"u{n}")[0] for n in range(3)]  # behind the busy one
        # (Per-owner caps may hold some back in the store; either way they wait.)
        assert all(system.store.get(job.id).status == "queued" for job in queued)
        _kill_until_failed(system.manager, "default")
        job, mode = system.submit(owner="late")       # right after FAILED
        assert mode == "threads"
        assert system.finished(job.id, 5).status == "succeeded"
        for old in [busy, *queued]:                   # already queued: drained to threads
            done = system.finished(old.id, settings.CELERY_DRAIN_AFTER + 15)
            assert done.status == "succeeded", done.error
        ids = [busy.id, job.id] + [j.id for j in queued]
        runs = system.worker_completions() + in_threads
        assert sorted(runs) == sorted(ids), "each job completed exactly once"
        assert {system.store.get(i).mode for i in ids} == {"threads"}
    finally:
        system.reconciler.stop()
        system.fallback.shutdown(wait=5)
