"""Cancel on real Celery: a running job's task is revoked with terminate, the run stops
(at its next progress report, or killed by the revoke, whichever comes first), the job
ends cancelled, no PDF appears, and the worker goes on to run the next job."""
from __future__ import annotations

import time

import pytest

from app.jobs.actions import CANCELLED, JobActions, celery_revoker
from tests.conftest import make_settings, wait_for
from tests.jobs.conftest import png_bytes
from tests.jobs.test_celery_e2e import SHEET_PARAMS, System

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def _large_cards(count: int) -> dict[str, bytes]:
    """Noisy images far larger than a slot: resampling them takes seconds."""
    import io

    import numpy
    from PIL import Image
    rng = numpy.random.default_rng(5)
    cards = {}
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (2100, 1500, 3), dtype=numpy.uint8)).save(
            buffer, "JPEG", quality=90)
        cards[f"fronts/big{index}.jpg"] = buffer.getvalue()
    return cards


@pytest.mark.redis
def test_cancel_terminates_a_running_celery_task(tmp_path, redis_server, celery_workers):
    system = System(make_settings(tmp_path, CELERY_BROKER_URL=redis_server.url))
    worker = celery_workers(system.settings, redis_server.url, "pdf_generation")
    heavy, mode = system.submit("sheets", SHEET_PARAMS, "pdf_generation", _large_cards(8))
    assert mode == "celery"
    wait_for(lambda: system.store.get(heavy.id).status == "running", 60,
             message="the job running")
    revoke = celery_revoker(system.dispatcher)
    revoked = []
    actions = JobActions(system.settings, system.store, revoke=lambda task, terminate: (
        revoked.append(terminate), revoke(task, terminate)))
    assert actions.cancel(system.store.get(heavy.id)) is True
    assert revoked == [True]

    def stopped():
        log = worker.log_path.read_bytes()
        return b"Terminating" in log or b"'skipped': 'lease_lost'" in log
    wait_for(stopped, 20, message=f"the run stopped:\n{worker.log_tail()}")
    job = system.store.get(heavy.id)
    assert job.status == "failed" and job.error == CANCELLED
    time.sleep(1)
    assert not (system.settings.outputs_dir / f"{heavy.id}.pdf").exists()

    light, _ = system.submit("sheets", SHEET_PARAMS, "pdf_generation",
                             {"fronts/a.png": png_bytes((1, 2, 3))})
    done = system.wait_finished(light.id, timeout=60)
    assert done.status == "succeeded", done.error
    assert system.store.get(heavy.id).error == CANCELLED  # never redone
    system.dispatcher.close()
