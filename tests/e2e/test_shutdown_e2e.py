"""Issue 3, "Shutdown", against the real hosting process `start_with_celery.py`:

* SIGTERM with a running job and a stop timeout long enough: the job finishes, the
  process exits 0 and nothing is left behind;
* SIGTERM with a shorter stop timeout: exit 0 with the job unfinished; the next boot on
  the same instance folder completes it (valid PDF), and it ran to completion only once.

The slow job is a genuine sheets job: many large, distinct card images that the engine
has to decode and resample. Nothing is injected into the workers.
"""
from __future__ import annotations

import io
import re
import sqlite3
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader

from tests.e2e.jobs_helpers import download_pdf, wait_job

pytestmark = pytest.mark.slow


# --- a slow sheets job ------------------------------------------------------------------
def _big_png(size=(2400, 3360)) -> bytes:
    """A large image that compresses to a few tens of kB but costs real work to decode
    and resample (about a third of a second per card on one core)."""
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (gradient, Image.new("L", size, 90),
                                gradient.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _with_text_chunk(png: bytes, text: str) -> bytes:
    """The same pixels with different bytes (a tEXt chunk before IEND): the engine
    de-duplicates identical files, so every card must differ."""
    data = b"Comment\x00" + text.encode()
    chunk = (struct.pack(">I", len(data)) + b"tEXt" + data
             + struct.pack(">I", zlib.crc32(b"tEXt" + data) & 0xFFFFFFFF))
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + chunk + png[iend:]


def slow_cards(count: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    base = _big_png()
    return [("fronts", (f"card{i:03d}.png", _with_text_chunk(base, f"card {i}"), "image/png"))
            for i in range(count)]


SLOW_FORM = {"card_size": "standard", "paper_size": "letter", "only_fronts": "true",
             "ppi": "300", "quality": "90", "name": "shutdown"}


def submit_slow_job(server, headers: dict, cards: int) -> str:
    response = server.post("/api/jobs/sheets", headers=headers, data=SLOW_FORM,
                           files=slow_cards(cards))
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_running(server, headers: dict, job_id: str, timeout: float = 60) -> dict:
    """Until a Celery worker is visibly working on the job (progress reported)."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        server.observe()  # so the psutil leftover check knows every worker process
        body = server.get(f"/api/jobs/{job_id}", headers=headers).json()
        assert body["status"] not in ("succeeded", "failed"), \
            f"the job ended before the test could interrupt it (make it slower): {body}"
        if body["status"] == "running" and body["progress"] > 0:
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never ran: {body}\n{server.tail()}")


# --- reading the instance folder directly (the server is down) ----------------------------
def stored_job(instance: Path, job_id: str) -> dict:
    conn = sqlite3.connect(f"file:{instance / 'app.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"job {job_id} is not in the store"
    return dict(row)


def completed_runs(instance: Path, job_id: str) -> int:
    """How many worker runs finished this job, from every worker log of every boot: the
    task result Celery logs carries run_job's return value, which names the output only
    for the run that produced it (a duplicate delivery returns 'skipped': 'done')."""
    pattern = re.compile(r"succeeded in [0-9.]+s: \{'job_id': '" + re.escape(job_id)
                         + r"', 'status': 'succeeded', 'output': ")
    count = 0
    for log in (instance / "logs").rglob("*.log*"):
        count += len(pattern.findall(log.read_text(errors="replace")))
    return count


def assert_valid_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    assert len(PdfReader(io.BytesIO(data)).pages) >= 1


def start(start_server, redis_server, instance: Path, stop_timeout: float):
    server = start_server("start_with_celery", instance=instance, START_CELERY_WORKER="true",
                          REDIS_URL=redis_server.url, CELERY_STOP_TIMEOUT=stop_timeout,
                          GUNICORN_WORKERS=1)
    server.wait_healthy(90)
    server.wait_workers(3, timeout=90)
    server.observe()
    return server


# --- the tests ---------------------------------------------------------------------------
def test_sigterm_lets_the_running_job_finish_within_the_stop_timeout(
        start_server, redis_server, tmp_path):
    instance = tmp_path / "instance"
    server = start(start_server, redis_server, instance, stop_timeout=90)
    admin = server.headers()
    job_id = submit_slow_job(server, admin, cards=40)  # about 8 s of work on an idle core
    wait_running(server, admin, job_id)

    signalled_at = time.time()
    signalled = time.monotonic()
    assert server.stop(timeout=150) == 0  # also checks that no descendant is left
    took = time.monotonic() - signalled

    job = stored_job(instance, job_id)
    assert job["status"] == "succeeded", (job, server.tail())
    assert job["mode"] == "celery" and job["attempts"] == 1, job
    assert job["finished_at"] is not None and job["finished_at"] > job["started_at"]
    assert job["finished_at"] > signalled_at, "the job was over before the SIGTERM"
    assert_valid_pdf(instance / job["output_path"])  # STORAGE_DIR: the instance
    assert completed_runs(instance, job_id) == 1
    assert took < 90 + 30, took  # inside the stop timeout (plus gunicorn's own stop)


def test_sigterm_with_a_short_stop_timeout_requeues_the_job_for_the_next_boot(
        start_server, redis_server, tmp_path):
    instance = tmp_path / "instance"
    server = start(start_server, redis_server, instance, stop_timeout=1)
    admin = server.headers()
    job_id = submit_slow_job(server, admin, cards=60)
    wait_running(server, admin, job_id)

    assert server.stop(timeout=90) == 0  # also checks that no descendant is left
    interrupted = stored_job(instance, job_id)  # the run was cut short: not finished
    assert interrupted["status"] in ("queued", "running"), interrupted
    assert interrupted["finished_at"] is None and interrupted["attempts"] == 1, interrupted
    assert completed_runs(instance, job_id) == 0

    again = start(start_server, redis_server, instance, stop_timeout=30)
    admin = again.headers()
    job = wait_job(again, admin, job_id, timeout=180)
    assert job["status"] == "succeeded", (job, again.tail())
    assert job["mode"] == "celery", job
    pdf = download_pdf(again, admin, job)
    assert len(pdf.pages) >= 7  # 60 cards, 8 per letter sheet

    assert again.stop(timeout=90) == 0
    done = stored_job(instance, job_id)
    assert done["status"] == "succeeded" and done["attempts"] >= 2, done
    assert completed_runs(instance, job_id) == 1  # ran to completion exactly once
    outputs = [p.name for p in (instance / "outputs").rglob("*") if p.is_file()
               and job_id in p.name]
    assert len(outputs) == 1, outputs  # one published PDF, no leftover temporaries
