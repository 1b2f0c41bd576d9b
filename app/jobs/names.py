"""The words a job record uses, written once: its statuses, kinds and run modes.

The store, the API, the metrics and the OpenAPI document all take them from here.
"""
from __future__ import annotations

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
JOB_STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED)
FINISHED = (SUCCEEDED, FAILED)

JOB_KINDS = ("sheets", "offset", "calibration")   # app.jobs.engine.KINDS says how each is made
JOB_MODES = ("celery", "threads")
