"""Issue 12, points 1 and 2: bounded jobs and a fallback that cannot take the web server
down, against a real start_with_celery.py (gunicorn, the manager, real Celery workers or
the fallback's child processes).

The images are what the attack used: 7000 x 7000 PNGs (49 Mpx, under the 50 Mpx cap),
compressible but not flat (~5.6 MB RGBA, ~2.7 MB RGB), made once per session; the twenty
"distinct" files differ by a text chunk only (the engine decodes each one: it dedupes
identical bytes, not identical pixels), which keeps the generation to one encode each.
"""
from __future__ import annotations

import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from tests.conftest import free_port, wait_for
from tests.e2e.conftest import add_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ALICE = ("alice", "alice-password-1")   # the hostile user
BOB = ("bob", "bob-password-11")
SIDE = 7000
RSS_BOUND_MB = 100   # what the web server and the manager may grow by while a huge job runs


def _pattern(seed: int, alpha: bool) -> np.ndarray:
    """Random 70-px tiles repeated: deflate finds the repeats, so the file stays small,
    yet every pixel row has texture (a flat image would decode the same but prove less)."""
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 256, (64, SIDE // 100, 4 if alpha else 3), dtype=np.uint8)
    rows = np.concatenate([tile] * 101, axis=1)[:, :SIDE]
    pixels = np.concatenate([rows] * (SIDE // 64 + 1), axis=0)[:SIDE]
    if alpha:
        pixels[:, :, 3] = np.linspace(60, 255, SIDE, dtype=np.uint8)[None, :]
    return np.ascontiguousarray(pixels)


def _variants(original: Path, count: int, folder: Path) -> list[Path]:
    """`count` files with the same pixels and different bytes (a tEXt chunk after IHDR)."""
    data = original.read_bytes()
    head, rest = data[:33], data[33:]          # signature + IHDR chunk
    paths = []
    for number in range(count):
        text = b"Comment\x00" + f"copy {number}".encode()
        chunk = struct.pack(">I", len(text)) + b"tEXt" + text + \
            struct.pack(">I", zlib.crc32(b"tEXt" + text))
        path = folder / f"{original.stem}-{number:02d}.png"
        path.write_bytes(head + chunk + rest)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def big_images(tmp_path_factory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("big-images")
    made = {}
    # Forty RGB ones: the fallback test needs a job that outlasts its time limit on a fast
    # machine too (twenty took 4 s in-process on the 2-core machine, 2026-12).
    for kind, alpha, count in (("rgba", True, 20), ("rgb", False, 40)):
        path = folder / f"{kind}.png"
        Image.fromarray(_pattern(1, alpha), "RGBA" if alpha else "RGB").save(
            path, compress_level=1)
        made[kind] = _variants(path, count, folder)
    return made


def _small_png() -> bytes:
    import io
    out = io.BytesIO()
    Image.new("RGB", (750, 1050), (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


def _files(paths: list[Path]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("fronts", (path.name, path.read_bytes(), "image/png")) for path in paths]


def _workers(server, admin) -> dict:
    status = server.get("/api/celery/status", headers=admin).json()
    return {worker["queue"]: worker for worker in status["workers"]}


def _finished(server, headers, job_id: str, timeout: float) -> dict:
    return wait_for(lambda: (body := server.get(f"/api/jobs/{job_id}", headers=headers).json())
                    ["status"] in ("succeeded", "failed") and body, timeout, 0.2,
                    f"job {job_id} to finish")


def _small_job_finishes(server, headers, within: float) -> float:
    submitted = time.monotonic()
    response = server.post("/api/jobs/sheets", headers=headers,
                           files=[("fronts", ("small.png", _small_png(), "image/png"))])
    assert response.status_code == 202, response.text
    body = _finished(server, headers, response.json()["id"], within)
    assert body["status"] == "succeeded", body
    return time.monotonic() - submitted


def _start(start_server, **env):
    server = start_server("start_with_celery", EMBEDDED_REDIS="true",
                          START_CELERY_WORKER="true", CELERY_QUEUES="pdf_generation,default",
                          CELERY_CONCURRENCY="2", CELERY_HEALTH_CHECK_INTERVAL="1", **env)
    server.wait_healthy(90)
    server.wait_workers(2, timeout=90)
    add_user(server, *ALICE)
    add_user(server, *BOB)
    return server


def test_one_user_cannot_take_the_sheet_worker_down(start_server, big_images):
    """Seven uploads of twenty 7000 x 7000 RGBA PNGs: each image needs ~1.1 GB to decode,
    more than a job may use on a 1024 MB worker (CELERY_MAX_MEMORY_MB, the default), so
    every upload is refused with a 400 naming the file and the figures, before any pixel
    is decoded. The worker never sees them, and another user's job runs at once."""
    # 7 x 112 MB in flight from one address: past the front's body cap, which would
    # refuse some at their head (429) before the decode budget this test is about.
    server = _start(start_server, FRONT_MAX_SPOOL_PER_ADDRESS_MB="2048")
    admin, alice, bob = server.headers(), server.headers(*ALICE), server.headers(*BOB)
    files = _files(big_images["rgba"])

    def attack(_number):
        return server.post("/api/jobs/sheets", headers=alice, files=files, timeout=240)

    with ThreadPoolExecutor(7) as pool:
        refusals = list(pool.map(attack, range(7)))
    for response in refusals:
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "over_memory_budget"
        assert "rgba-" in error["message"] and "7000 x 7000 px, RGBA" in error["message"]
        assert "needs about 1127 MB" in error["message"]
        assert "a job may use 844 MB (CELERY_MAX_MEMORY_MB=1024" in error["message"]
    assert server.get("/api/jobs", headers=alice).json()["jobs"] == []

    worker = _workers(server, admin)["pdf_generation"]
    assert worker["state"] == "RUNNING" and worker["restarts"] == 0, worker
    assert _small_job_finishes(server, bob, within=20) < 20


def test_a_job_over_the_worker_memory_limit_fails_and_the_worker_is_not_blamed(
        start_server, big_images):
    """An operator who lets jobs use more than the worker may (JOB_MEMORY_MB over
    CELERY_MAX_MEMORY_MB): the jobs that drive the worker over its limit fail with that
    reason and are not run again in the next worker; the restarts do not count toward
    FAILED (CELERY_MAX_RESTARTS=1 would give up at the second counted one); another
    user's job then runs."""
    server = _start(start_server, CELERY_MAX_MEMORY_MB="400", JOB_MEMORY_MB="4000",
                    CELERY_MAX_RESTARTS="1", JOB_IN_FLIGHT_PER_USER="1")
    admin, alice, bob = server.headers(), server.headers(*ALICE), server.headers(*BOB)
    images = big_images["rgba"]
    for round_number, pair in enumerate((images[0:2], images[2:4]), start=1):
        # One at a time, each once the worker is back: while it restarts, its queue has
        # no consumer and new jobs would go to the fallback instead.
        response = server.post("/api/jobs/sheets", headers=alice, files=_files(pair))
        assert response.status_code == 202, response.text
        body = _finished(server, alice, response.json()["id"], 120)
        assert body["status"] == "failed" and body["mode"] == "celery", body
        assert body["error"] == ("this job needed more memory than a worker may use "
                                 "(limit 400 MB)"), body
        # The job fails as the restart begins; the status shows it a moment later.
        worker = wait_for(lambda: (w := _workers(server, admin)["pdf_generation"])[
            "restarts_by_reason"]["memory"] >= round_number and w["state"] == "RUNNING"
            and w["responsive"] and w, 60, 0.3, "the sheet worker to be restarted")
        assert worker["failures"] == 0 and "memory" in worker["last_error"], worker
    assert _small_job_finishes(server, bob, within=30) < 30


def _gradient_card(side: int) -> bytes:
    """A side x side RGBA PNG with gradients and text, like card art."""
    import io

    from PIL import ImageDraw
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.zeros((side, side, 4), dtype=np.uint8)
    pixels[:, :, 0], pixels[:, :, 1] = ramp[None, :], ramp[:, None]
    pixels[:, :, 2], pixels[:, :, 3] = 255 - ramp[None, :], 200
    image = Image.fromarray(pixels, "RGBA")
    ImageDraw.Draw(image).text((side // 10, side // 10), "Fireball 3 mana", fill="white")
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def test_a_worker_resized_at_runtime_splits_its_memory_between_its_new_pool(start_server):
    """An admin raises the concurrency from 2 to 8 (pdf_generation: 1 job at once, then 4):
    the restarted sheet worker gives each job a quarter of its memory, so a 3000 x 3000
    RGBA image (about 207 MB to decode) that fit the old 844 MB share fails in the worker
    with the new figures, instead of four such jobs together overrunning the worker."""
    server = _start(start_server)
    admin, alice = server.headers(), server.headers(*ALICE)
    card = _gradient_card(3000)
    files = [("fronts", ("big-card.png", card, "image/png"))]
    before = server.post("/api/jobs/sheets", headers=alice, files=files)
    assert before.status_code == 202, before.text
    assert _finished(server, alice, before.json()["id"], 120)["status"] == "succeeded"

    assert server.post("/api/celery/start", headers=admin,
                       json={"concurrency": 8}).status_code == 200
    wait_for(lambda: (w := _workers(server, admin)["pdf_generation"])["pool_size"] == 4
             and w["state"] == "RUNNING" and w["responsive"], 90, 0.3,
             "the sheet worker to run 4 jobs at once")
    after = server.post("/api/jobs/sheets", headers=alice, files=files)
    assert after.status_code == 202, after.text  # the web process checks the start's split
    body = _finished(server, alice, after.json()["id"], 120)
    assert body["status"] == "failed" and body["mode"] == "celery", body
    assert "big-card.png needs about 207 MB" in body["error"], body
    assert ("a job may use 136 MB (CELERY_MAX_MEMORY_MB=1024 per pdf_generation worker "
            "running 4 job(s) at once)") in body["error"], body


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _fallback_children(server) -> list[psutil.Process]:
    found = []
    for proc in server.observe():
        try:
            if "app.jobs.fallback_child" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_fallback_runs_outside_the_web_server(start_server, big_images, tmp_path):
    """Broker down: a huge job (forty 7000 x 7000 RGB images, each within the budget)
    runs in the fallback, in a child process. While it runs, neither the manager (the
    top process) nor any gunicorn worker grows by more than RSS_BOUND_MB; the child is
    killed at its time limit and the job fails saying so; stopping the server leaves no
    child behind (the fixture checks every descendant)."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = start_server("start_with_celery", CELERY_BROKER_URL=dead,
                          FALLBACK_TIME_LIMIT="3", FALLBACK_MAX_JOBS="1")
    server.wait_healthy(90, status=(200, 503))
    add_user(server, *ALICE)
    alice = server.headers(*ALICE)
    hosts = [server.proc.pid] + [p.pid for p in server.observe() if "gunicorn" in
                                 " ".join(p.cmdline()) or "start_with_celery" in
                                 " ".join(p.cmdline())]
    before = {pid: _rss_mb(pid) for pid in hosts}

    response = server.post("/api/jobs/sheets", headers=alice, files=_files(big_images["rgb"]))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    peak = dict(before)
    child_peak = 0.0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for pid in hosts:
            peak[pid] = max(peak[pid], _rss_mb(pid))
        for child in _fallback_children(server):
            child_peak = max(child_peak, _rss_mb(child.pid))
        body = server.get(f"/api/jobs/{job_id}", headers=alice).json()
        if body["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert body["mode"] == "threads" and body["status"] == "failed", body
    assert body["error"] == ("this job needed more time than a fallback process may use "
                             "(time limit 3 s)"), body
    growth = {pid: round(peak[pid] - before[pid], 1) for pid in hosts}
    print(f"RSS growth (MB) of the manager and gunicorn workers: {growth}; "
          f"fallback child peak {child_peak:.0f} MB")
    assert max(growth.values()) < RSS_BOUND_MB, growth
    assert child_peak > 200, child_peak   # the decoding happened there
    wait_for(lambda: not _fallback_children(server), 10, 0.2, "the killed child to go")


def test_a_cancelled_fallback_job_kills_its_process(start_server, big_images):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = start_server("start_with_celery", CELERY_BROKER_URL=dead)
    server.wait_healthy(90, status=(200, 503))
    add_user(server, *ALICE)
    alice = server.headers(*ALICE)
    response = server.post("/api/jobs/sheets", headers=alice,
                           files=_files(big_images["rgb"][:6]))
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    children = wait_for(lambda: _fallback_children(server), 30, 0.1, "a fallback child")
    wait_for(lambda: server.get(f"/api/jobs/{job_id}", headers=alice).json()["status"]
             == "running", 30, 0.1, "the job to run")
    cancel = server.post(f"/api/jobs/{job_id}/cancel", headers=alice)
    assert cancel.status_code in (200, 202), cancel.text
    gone = wait_for(lambda: all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE
                                for c in children), 5, 0.1, "the child to be killed")
    assert gone
    assert server.get(f"/api/jobs/{job_id}", headers=alice).json()["status"] == "failed"


def test_stopping_the_server_kills_a_running_fallback_process(start_server, big_images):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    server = start_server("start_with_celery", CELERY_BROKER_URL=dead)
    server.wait_healthy(90, status=(200, 503))
    add_user(server, *ALICE)
    response = server.post("/api/jobs/sheets", headers=server.headers(*ALICE),
                           files=_files(big_images["rgb"][:6]))
    assert response.status_code == 202, response.text
    wait_for(lambda: _fallback_children(server), 30, 0.1, "a fallback child")
    server.stop(timeout=40)   # raises when any descendant, the child included, is left
