"""Retention: old outputs and uploads go, live jobs' files stay, orphans are swept."""
from __future__ import annotations

import os
import time

from app.jobs.cleanup import cleanup_expired
from app.jobs.store import JobStore
from tests.database import set_job_columns


def touch_old(path, seconds_ago):
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def test_cleanup_expired(settings):
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    day = 24 * 3600
    old = store.create(owner="a", kind="calibration", params={}, queue="default")
    claim = store.claim(old.id, worker="w")
    output = settings.outputs_dir / f"{old.id}.pdf"
    output.write_bytes(b"%PDF")
    (settings.uploads_dir / old.id).mkdir()
    store.succeed(old.id, claim.token, output_path=settings.storage_relative(output))
    set_job_columns(store, old.id, finished_at=time.time() - 2 * day)

    fresh = store.create(owner="a", kind="calibration", params={}, queue="default")
    claim = store.claim(fresh.id, worker="w")
    fresh_output = settings.outputs_dir / f"{fresh.id}.pdf"
    fresh_output.write_bytes(b"%PDF")
    store.succeed(fresh.id, claim.token, output_path=settings.storage_relative(fresh_output))

    waiting = store.create(owner="a", kind="sheets", params={}, queue="pdf_generation")
    waiting_dir = settings.uploads_dir / waiting.id
    waiting_dir.mkdir()
    touch_old(waiting_dir, 2 * day)  # a job still queued keeps its inputs, however old

    orphan = settings.outputs_dir / "deadbeef.pdf"
    orphan.write_bytes(b"%PDF")
    touch_old(orphan, 2 * day)
    staging = settings.uploads_dir / ".staging-abc"
    staging.mkdir()
    touch_old(staging, 2 * day)

    counts = cleanup_expired(settings, store)
    assert counts == {"outputs": 1, "uploads": 1, "orphans": 2, "records": 0}
    assert not output.exists() and not (settings.uploads_dir / old.id).exists()
    assert store.get(old.id).output_path is None and store.get(old.id).message == "expired"
    assert fresh_output.exists() and waiting_dir.exists()
    assert not orphan.exists() and not staging.exists()

    # Records outlive their files, but not forever.
    counts = cleanup_expired(settings, store, now=time.time() + 30 * day)
    assert counts["records"] == 2 and store.get(old.id) is None
    assert store.get(waiting.id) is not None
