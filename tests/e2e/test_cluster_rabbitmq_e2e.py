"""Two deployments on one RabbitMQ vhost (issue 8): different CELERY_QUEUE_PREFIX values,
even the same NODE_NAME (the pidbox collision of the issue: `default@vm.celery.pidbox`),
and neither sees the other: both healthy, each one's jobs run on its own workers."""
from __future__ import annotations

import os
import secrets

import pytest
from kombu import Connection

from tests.conftest import wait_for
from tests.e2e.cluster_helpers import job_rows, status

pytestmark = pytest.mark.slow
AMQP_URL = os.environ.get("SCM_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
QUEUES = ("pdf_generation", "pdf_offset", "default")


@pytest.fixture
def prefixes():
    """Two random prefixes; afterwards their queues and exchanges (ours only) are gone."""
    try:
        with Connection(AMQP_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        message = f"RabbitMQ at {AMQP_URL} unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    chosen = [f"t{secrets.token_hex(4)}.", f"t{secrets.token_hex(4)}."]
    yield chosen
    with Connection(AMQP_URL, connect_timeout=3) as conn:
        for prefix in chosen:
            for name in QUEUES:
                _quietly(conn, "queue_delete", f"{prefix}{name}")
            for name in ("scm", "celery.pidbox", "reply.celery.pidbox", "celeryev"):
                _quietly(conn, "exchange_delete", f"{prefix}{name}")


def _quietly(conn: Connection, method: str, name: str) -> None:
    channel = conn.channel()  # a failed delete closes its channel: one per call
    try:
        getattr(channel, method)(name)
    except Exception:
        pass
    finally:
        try:
            channel.close()
        except Exception:
            pass


def test_two_deployments_share_a_vhost_without_collision(start_server, prefixes, tmp_path):
    node = f"shared-{secrets.token_hex(3)}"   # the same host name in both deployments
    servers = [start_server("start_with_celery", instance=tmp_path / f"d{i}",
                            CELERY_BROKER_URL=AMQP_URL, CELERY_QUEUE_PREFIX=prefix,
                            NODE_NAME=node, START_CELERY_WORKER="true",
                            CELERY_HEALTH_CHECK_INTERVAL="1", JOB_TEST_SLEEP_SECONDS="0.1",
                            GUNICORN_WORKERS="1")
               for i, prefix in enumerate(prefixes)]
    for server in servers:
        server.wait_healthy(90)
        server.wait_workers(3, timeout=90)
    headers = [server.headers() for server in servers]
    ids = [[server.post("/api/jobs/calibration", headers=h, json={"paper_size": "a4"})
            .json()["id"] for _ in range(5)] for server, h in zip(servers, headers, strict=True)]
    logs = [f"{server.env['INSTANCE_PATH']}/logs/worker-default.log" for server in servers]
    for server, own, prefix in zip(servers, ids, prefixes, strict=True):
        database = f"sqlite:///{server.env['INSTANCE_PATH']}/app.sqlite3"

        def succeeded(database=database, own=own):
            rows = job_rows(database, own)
            return rows if all(r["status"] == "succeeded" for r in rows.values()) else None
        rows = wait_for(succeeded, 60, 0.3, f"jobs of deployment {prefix}")
        assert {r["mode"] for r in rows.values()} == {"celery"}
    for server, h, log, own, other in zip(servers, headers, logs, ids, reversed(ids),
                                          strict=True):
        # Each job ran on its own deployment's worker (its log names the job) only.
        text = open(log).read()
        assert all(job_id in text for job_id in own)
        assert not any(job_id in text for job_id in other)
        body = status(server, h)
        assert {w["state"] for w in body["workers"]} == {"RUNNING"}
        assert all(w["restarts"] == 0 for w in body["workers"]), body["workers"]
        assert "RESOURCE_LOCKED" not in server.tail(400)
        assert server.get("/api/celery/health").json()["status"] == "healthy"
    for server in servers:
        assert server.stop() == 0
