"""Jobs end to end through a real server: Celery mode and threads mode, valid PDFs,
ownership isolation."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import ROOT, add_user, base_env
from tests.e2e.jobs_helpers import card_files, download_pdf, wait_job

pytestmark = pytest.mark.slow

ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-11")


def _run_all_kinds(server, expected_mode: str) -> None:
    add_user(server, *ALICE)
    add_user(server, *BOB)
    alice = server.headers(*ALICE)
    bob = server.headers(*BOB)
    admin = server.headers()

    form = {"card_size": "standard", "paper_size": "letter", "name": "e2e", "skip": "1"}
    submitted = server.post("/api/jobs/sheets", headers=alice, data=form, files=card_files(5))
    assert submitted.status_code == 202, submitted.text
    sheets = wait_job(server, alice, submitted.json()["id"])
    assert sheets["status"] == "succeeded", sheets
    assert sheets["mode"] == expected_mode and sheets["progress"] == 1
    pdf = download_pdf(server, alice, sheets)
    assert len(pdf.pages) == 2  # one front page, one back page

    offset = server.post("/api/jobs/offset", headers=alice,
                         data={"source_job_id": sheets["id"], "x": "12", "y": "-7"})
    assert offset.status_code == 202, offset.text
    offset_job = wait_job(server, alice, offset.json()["id"])
    assert offset_job["status"] == "succeeded", offset_job
    assert len(download_pdf(server, alice, offset_job).pages) == 2

    calibration = server.post("/api/jobs/calibration", headers=bob, json={"paper_size": "a4"})
    assert calibration.status_code == 202, calibration.text
    calibration_job = wait_job(server, bob, calibration.json()["id"])
    assert calibration_job["status"] == "succeeded", calibration_job
    assert calibration_job["mode"] == expected_mode
    assert len(download_pdf(server, bob, calibration_job).pages) == 2

    # Ownership: bob cannot see, download or reuse alice's job; the admin can see it.
    for path in (f"/api/jobs/{sheets['id']}", f"/api/jobs/{sheets['id']}/result"):
        assert server.get(path, headers=bob).status_code == 404
    reuse = server.post("/api/jobs/offset", headers=bob, data={"source_job_id": sheets["id"]})
    assert reuse.status_code == 400
    assert server.get(f"/api/jobs/{sheets['id']}", headers=admin).status_code == 200
    listed = {job["id"] for job in server.get("/api/jobs", headers=bob).json()["jobs"]}
    assert listed == {calibration_job["id"]}
    everyone = {job["id"] for job in server.get("/api/jobs", headers=admin).json()["jobs"]}
    assert {sheets["id"], offset_job["id"], calibration_job["id"]} <= everyone


@pytest.mark.backends("sqlite", "postgresql")  # gunicorn, workers and manager on one store
def test_jobs_in_celery_mode(start_server, redis_server):
    server = start_server("start_with_celery", START_CELERY_WORKER="true",
                          REDIS_URL=redis_server.url)
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    _run_all_kinds(server, "celery")
    assert server.stop() == 0


def test_jobs_in_threads_mode(start_server):
    # No broker at all: the app runs every job on its own thread pool.
    server = start_server("run")
    assert server.wait_healthy(60)["mode"] == "threads"
    _run_all_kinds(server, "threads")
    assert server.stop() == 0


def test_standalone_worker_serves_a_server_without_manager(start_server, redis_server,
                                                           tmp_path):
    # START_CELERY_WORKER=false: no manager anywhere; an operator runs celery_worker.py.
    server = start_server("run", REDIS_URL=redis_server.url)
    server.wait_healthy(60)
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(ROOT / "celery_worker.py"), "--queues", "default,pdf_offset",
             "--concurrency", "1", "--loglevel", "INFO"],
            cwd=ROOT, env=server.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        # Dispatch sends work to Celery only once some worker consumes the queue.
        deadline = time.monotonic() + 60
        while b" ready." not in log_path.read_bytes():
            assert worker.poll() is None and time.monotonic() < deadline, \
                log_path.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        admin = server.headers()
        status = server.get("/api/celery/status", headers=admin).json()
        assert status["manager"]["running"] is False and status["broker"]["reachable"]
        submitted = server.post("/api/jobs/calibration", headers=admin,
                                json={"paper_size": "letter"})
        assert submitted.status_code == 202, submitted.text
        job = wait_job(server, admin, submitted.json()["id"], timeout=90)
        assert job["status"] == "succeeded" and job["mode"] == "celery", job
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        assert worker.wait(60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    assert server.stop() == 0


def test_standalone_worker_rejects_bad_arguments(tmp_path):
    env = base_env(tmp_path / "instance", 1, REDIS_URL="redis://127.0.0.1:1/0")
    for args in (["--queues", "celery"], ["--concurrency", "0"], ["--loglevel", "LOUD"]):
        result = subprocess.run([sys.executable, str(ROOT / "celery_worker.py"), *args],
                                env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
