"""GET /metrics: Prometheus text from the manager's status and the job rows."""
from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from app.jobs.store import JobStore
from app.supervisor import manager_handle
from tests.database import set_job_columns
from tests.web.fakes import FakeManager


def samples(text: str) -> dict:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_cover_workers_queues_jobs(app, client):
    assert manager_handle(app).acquire(FakeManager)
    store = JobStore(app.config["SETTINGS"].database_url)
    done = store.create(owner="alice", kind="sheets", params={}, queue="pdf_generation")
    store.create(owner="alice", kind="calibration", params={}, queue="default")
    now = time.time()
    set_job_columns(store, done.id, status="succeeded", started_at=now - 3.0, finished_at=now)

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    found = samples(response.get_data(as_text=True))

    def value(name, **labels):
        return found[(name, tuple(sorted(labels.items())))]

    worker = {"queue": "default", "worker": "default@host"}
    assert value("scm_worker_up", **worker) == 1
    assert value("scm_worker_state", state="RUNNING", **worker) == 1
    assert value("scm_worker_state", state="FAILED", **worker) == 0
    assert value("scm_worker_restarts_total", reason="crash", **worker) == 1
    assert value("scm_worker_restarts_total", reason="manual", **worker) == 1
    assert value("scm_worker_rss_bytes", **worker) == 1000
    assert value("scm_worker_memory_bytes", **worker) == 5000
    assert value("scm_worker_cpu_percent", **worker) == 1.5
    assert value("scm_queue_depth", queue="default") == 3
    assert value("scm_fallback_active") == 0
    assert value("scm_jobs", kind="sheets", status="succeeded") == 1
    assert value("scm_jobs", kind="calibration", status="queued") == 1
    job = {"kind": "sheets", "status": "succeeded"}
    assert value("scm_job_duration_seconds_count", **job) == 1
    assert value("scm_job_duration_seconds_bucket", le="2.5", **job) == 0
    assert value("scm_job_duration_seconds_bucket", le="5.0", **job) == 1
    assert 2.9 < value("scm_job_duration_seconds_sum", **job) < 3.1


def test_metrics_without_manager_show_fallback(client):
    found = samples(client.get("/metrics").get_data(as_text=True))
    assert found[("scm_manager_up", ())] == 0
    assert found[("scm_fallback_active", ())] == 1


def test_metrics_token(make_app):
    app = make_app(METRICS_TOKEN="scrape-token-123")
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert ok.status_code == 200 and b"scm_jobs" in ok.data
