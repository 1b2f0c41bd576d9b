"""A test harness worker app: the real `celery_app` with fault injection on calibration jobs.

Workers started with `-A tests.jobs.faulty_celery_app` run the real tasks, except that the
calibration kind, steered by two extra job params its params model adds, first
* sleeps params["test_slow_seconds"] (reporting progress, so its lease stays fresh), and
* raises OSError for its first params["test_transient_failures"] runs (counted in a file),
and every completed run appends a line to <instance>/completions.log, so a test can prove
that a job ran to completion exactly once.
"""
from __future__ import annotations

import os
import time

from app.cards.models import CalibrationOptions
from app.jobs import engine
from celery_app import app, celery, settings  # noqa: F401  (what `-A` loads)

_real = engine.KINDS["calibration"]


class FaultyCalibration(CalibrationOptions):
    test_slow_seconds: float = 0
    test_transient_failures: int = 0


def _count(name: str) -> int:
    path = settings.INSTANCE_PATH / name
    with open(path, "a+") as handle:
        handle.write("x")
        handle.seek(0)
        return len(handle.read())


def faulty_calibration(inputs, params, output, progress, settings):
    job_id = inputs.name                      # the upload folder is named after the job
    failures = params.test_transient_failures
    if failures and _count(f"attempts-{job_id}") <= failures:
        raise OSError("injected transient failure")
    slow = params.test_slow_seconds
    deadline = time.monotonic() + slow
    while time.monotonic() < deadline:
        progress(0.5 * (1 - (deadline - time.monotonic()) / slow), "sleeping")
        time.sleep(0.1)
    result = _real.make(inputs, params, output, progress, settings)
    with open(settings.INSTANCE_PATH / "completions.log", "a") as handle:
        handle.write(f"{job_id} {os.getpid()}\n")
    return result


engine.KINDS["calibration"] = engine.JobKind(FaultyCalibration, faulty_calibration)
