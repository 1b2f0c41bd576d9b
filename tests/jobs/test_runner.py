"""run_job: idempotency, outcomes, leases and progress, with stand-in card work."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from app.cards.errors import CardError
from app.cards.models import CalibrationOptions
from app.jobs import engine, runner
from app.jobs.store import JobStore


@pytest.fixture
def job_store(settings):
    settings.ensure_dirs()
    return JobStore(settings.database_url)


def new_job(store, kind="calibration"):
    return store.create(owner="alice", kind=kind, params={"paper_size": "letter"},
                        queue="default")


def fake_kind(monkeypatch, body):
    """Replace the calibration engine call with `body(progress)`; it writes a PDF stub."""
    def make(inputs, params, output, progress, settings):
        body(progress)
        output.write_bytes(b"%PDF-1.4 fake\n%%EOF\n")
        return "fake"
    monkeypatch.setitem(engine.KINDS, "calibration", engine.JobKind(CalibrationOptions, make))


def test_success_writes_output_atomically(settings, job_store, monkeypatch):
    fake_kind(monkeypatch, lambda progress: progress(0.5, "half"))
    job = new_job(job_store)
    result = runner.run_job(settings, job.id, runner="test", store=job_store)
    assert result["status"] == "succeeded"
    done = job_store.get(job.id)
    assert done.status == "succeeded" and done.progress == 1.0
    assert done.output_path == f"outputs/{job.id}.pdf"  # relative to STORAGE_DIR
    assert (settings.outputs_dir / f"{job.id}.pdf").read_bytes().startswith(b"%PDF")
    # No temporary file left behind.
    assert [p.name for p in settings.outputs_dir.iterdir()] == [f"{job.id}.pdf"]


def test_finished_job_is_not_redone(settings, job_store, monkeypatch):
    calls = []
    fake_kind(monkeypatch, lambda progress: calls.append(1))
    job = new_job(job_store)
    runner.run_job(settings, job.id, runner="a", store=job_store)
    again = runner.run_job(settings, job.id, runner="b", store=job_store)
    assert again == {"job_id": job.id, "status": "succeeded", "skipped": "done"}
    assert len(calls) == 1 and job_store.get(job.id).worker == "a"


def test_job_running_elsewhere_is_not_started(settings, job_store, monkeypatch):
    calls = []
    fake_kind(monkeypatch, lambda progress: calls.append(1))
    job = new_job(job_store)
    job_store.claim(job.id, worker="elsewhere")
    result = runner.run_job(settings, job.id, runner="b", store=job_store)
    assert result["skipped"] == "busy" and calls == []


def test_card_error_fails_at_once_with_its_message(settings, job_store, monkeypatch):
    def body(progress):
        raise CardError("unknown paper size 'x'; supported: letter")
    fake_kind(monkeypatch, body)
    job = new_job(job_store)
    result = runner.run_job(settings, job.id, runner="a", store=job_store, retry_transient=True)
    assert result["status"] == "failed" and "unknown paper size" in result["error"]
    got = job_store.get(job.id)
    assert got.status == "failed" and got.error.startswith("unknown paper size")
    assert got.attempts == 1


def test_transient_failure_released_for_retry(settings, job_store, monkeypatch):
    def body(progress):
        raise sqlite3.OperationalError("database is locked")
    fake_kind(monkeypatch, body)
    job = new_job(job_store)
    with pytest.raises(runner.TransientJobError):
        runner.run_job(settings, job.id, runner="a", store=job_store, retry_transient=True)
    assert job_store.get(job.id).status == "queued"
    # The last attempt fails the job instead.
    result = runner.run_job(settings, job.id, runner="a", store=job_store)
    assert result["status"] == "failed" and "database is locked" in result["error"]


def test_unexpected_error_fails_without_leaking_details(settings, job_store, monkeypatch):
    def body(progress):
        raise KeyError("secret internals")
    fake_kind(monkeypatch, body)
    job = new_job(job_store)
    result = runner.run_job(settings, job.id, runner="a", store=job_store)
    assert result["status"] == "failed"
    assert "KeyError" in result["error"] and "secret" not in result["error"]


def test_progress_is_throttled_and_forwarded(settings, job_store, monkeypatch):
    seen = []
    fake_kind(monkeypatch, lambda progress: [progress(i / 1000, f"step {i}")
                                             for i in range(1000)])
    writes = []
    original = job_store.heartbeat
    monkeypatch.setattr(job_store, "heartbeat",
                        lambda *a, **k: writes.append(1) or original(*a, **k))
    job = new_job(job_store)
    runner.run_job(settings, job.id, runner="a", store=job_store,
                   progress=lambda f, m: seen.append((f, m)))
    assert len(writes) <= 3 and len(seen) <= 3  # 1000 reports, a handful of writes


def test_heartbeat_thread_keeps_a_slow_job_alive(settings, job_store, monkeypatch):
    fake_kind(monkeypatch, lambda progress: time.sleep(0.6))
    job = new_job(job_store)
    beats = []
    original = job_store.heartbeat
    monkeypatch.setattr(job_store, "heartbeat",
                        lambda *a, **k: beats.append(time.time()) or original(*a, **k))
    runner.run_job(settings, job.id, runner="a", store=job_store, heartbeat_seconds=0.1)
    assert len(beats) >= 3


def test_lost_lease_stops_the_run_and_it_cannot_complete(settings, job_store, monkeypatch):
    gate = threading.Event()

    def body(progress):
        gate.wait(5)
        progress(0.9, "late")  # raises LeaseLost: someone else owns the job now

    fake_kind(monkeypatch, body)
    job = new_job(job_store)
    results = []
    thread = threading.Thread(target=lambda: results.append(
        runner.run_job(settings, job.id, runner="old", store=job_store,
                       heartbeat_seconds=60)))
    thread.start()
    time.sleep(0.2)
    assert job_store.break_lease(job.id, worker_node="old")
    winner = job_store.claim(job.id, worker="new")
    gate.set()
    thread.join(5)
    assert results[0]["skipped"] == "lease_lost"
    assert job_store.get(job.id).worker == "new"
    assert job_store.succeed(job.id, winner.token, output_path="/new.pdf")


def test_missing_job(settings, job_store):
    assert runner.run_job(settings, "nope", runner="a", store=job_store)["status"] == "missing"


def test_retry_delay_grows_with_jitter():
    first = [runner.retry_delay(0) for _ in range(50)]
    second = [runner.retry_delay(1) for _ in range(50)]
    assert all(1 <= d <= 2 for d in first) and all(2 <= d <= 4 for d in second)
    assert len(set(first)) > 1


def test_transient_classification():
    assert runner.is_transient(OSError("disk full"))
    assert runner.is_transient(sqlite3.OperationalError("locked"))
    assert not runner.is_transient(FileNotFoundError("gone"))
    assert not runner.is_transient(ValueError("bad"))


def _dead_pid() -> int:
    import subprocess
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_job_held_by_a_dead_local_process_is_taken_over(settings, job_store, monkeypatch):
    import socket
    fake_kind(monkeypatch, lambda progress: None)
    job = new_job(job_store)
    job_store.claim(job.id, worker=f"default@{socket.gethostname()}/{_dead_pid()}")
    result = runner.run_job(settings, job.id, runner="b", store=job_store)
    assert result["status"] == "succeeded"
    assert job_store.get(job.id).worker == "b" and job_store.get(job.id).attempts == 2


def test_job_held_on_another_host_waits_for_its_lease(settings, job_store, monkeypatch):
    fake_kind(monkeypatch, lambda progress: None)
    job = new_job(job_store)
    job_store.claim(job.id, worker=f"default@elsewhere/{_dead_pid()}")
    assert runner.run_job(settings, job.id, runner="b", store=job_store)["skipped"] == "busy"


def test_engine_writes_the_final_path_itself(settings, job_store, monkeypatch):
    """The card engine's write is already atomic (temp file + os.replace): the runner
    hands it the final path instead of wrapping it in a second temp file + rename."""
    from app.cards.pdf import write_atomically

    seen = []

    def calibration(inputs, params, output, progress, settings):
        seen.append(output)
        write_atomically(output, lambda fh: fh.write(b"%PDF-1.4 fake\n%%EOF\n"))
        return "ok"

    monkeypatch.setitem(engine.KINDS, "calibration", engine.JobKind(CalibrationOptions, calibration))
    job = new_job(job_store)
    result = runner.run_job(settings, job.id, runner="test", store=job_store)
    assert result["status"] == "succeeded"
    final = settings.outputs_dir / f"{job.id}.pdf"
    assert seen == [final]
    assert final.read_bytes().startswith(b"%PDF")
    assert [p.name for p in settings.outputs_dir.iterdir()] == [final.name]


def test_engine_failure_leaves_no_output(settings, job_store, monkeypatch):
    from app.cards.pdf import write_atomically

    def calibration(inputs, params, output, progress, settings):
        def write(fh):
            fh.write(b"%PDF-1.4 half")
            raise CardError("broke half way")
        write_atomically(output, write)

    monkeypatch.setitem(engine.KINDS, "calibration", engine.JobKind(CalibrationOptions, calibration))
    job = new_job(job_store)
    result = runner.run_job(settings, job.id, runner="test", store=job_store)
    assert result == {"job_id": job.id, "status": "failed", "error": "broke half way"}
    assert list(settings.outputs_dir.iterdir()) == []


@pytest.mark.parametrize("kind, params, message", [
    ("calibration", {"paper_size": "a0"}, "unknown paper size 'a0'"),
    ("offset", {"x": 5000}, "x offset 5000 px is out of range"),
    ("sheets", {"ppi": 5}, "ppi must be between"),
    ("sheets", {"paper_size": "a3", "card_size": "poker"}, "not available on 'a3'"),
    ("calibration", {"paper_size": "letter", "extra": 1}, "unknown option 'extra'"),
])
def test_stored_params_are_validated_again_in_the_worker(settings, job_store, kind, params,
                                                         message):
    """A row the models refuse (old, hand-made, tampered) fails at once with the engine's
    message, before any card work, and leaves no output."""
    job = job_store.create(owner="alice", kind=kind, params=params, queue="default")
    result = runner.run_job(settings, job.id, runner="test", store=job_store)
    assert result["status"] == "failed" and message in result["error"]
    assert job_store.get(job.id).attempts == 1
    assert not settings.outputs_dir.exists() or list(settings.outputs_dir.iterdir()) == []


def test_stored_params_round_trip_through_the_model(settings, job_store, monkeypatch):
    """What the API stores (the model's JSON) is what the engine call receives, as the model."""
    from app.jobs.engine import SheetJobParams

    received = []

    def make(inputs, params, output, progress, settings):
        received.append(params)
        output.write_bytes(b"%PDF-1.4\n")
        return "ok"

    monkeypatch.setitem(engine.KINDS, "sheets", engine.JobKind(SheetJobParams, make))
    sent = SheetJobParams.parse(paper_size="a4", ppi="600", skip="3", crop=" 3mm ",
                                files={"fronts": 2, "back": 0, "double_sided": 0})
    job = job_store.create(owner="alice", kind="sheets", params=sent.model_dump(mode="json"),
                           queue="pdf_generation")
    assert runner.run_job(settings, job.id, runner="test", store=job_store)["status"] == \
        "succeeded"
    assert received == [sent] and isinstance(received[0], SheetJobParams)
