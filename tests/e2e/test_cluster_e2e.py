"""Two hosts of one deployment (issue 8): their own instance folders and NODE_NAMEs,
host B worker-only (`--no-web`), one PostgreSQL database, one Redis, one STORAGE_DIR."""
from __future__ import annotations

import secrets
import time

import pytest

from tests.conftest import wait_for
from tests.database import current_database_url
from tests.e2e.cluster_helpers import cluster_env, host_states, job_rows, kill_host, lease_node, status
from tests.e2e.test_cluster_rabbitmq_e2e import AMQP_URL, prefixes  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.backends("postgresql")]
JOBS = 100


@pytest.fixture(params=["redis", "rabbitmq"])
def broker_env(request):
    """Redis (the test's own redis-server), or the shared RabbitMQ with a queue prefix
    of this test's own (its queues and exchanges are deleted afterwards)."""
    if request.param == "redis":
        return {"REDIS_URL": request.getfixturevalue("redis_server").url}
    prefix = request.getfixturevalue("prefixes")[0]
    return {"CELERY_BROKER_URL": AMQP_URL, "CELERY_QUEUE_PREFIX": prefix}


def test_a_host_killed_mid_run_loses_no_job_and_shows_lost(start_server, broker_env,
                                                         tmp_path):
    tag = secrets.token_hex(3)
    node_a, node_b = f"host-a-{tag}", f"host-b-{tag}"
    env = cluster_env(tmp_path / "storage", **broker_env)
    # B first, so it takes the reconciler lease and its death must move it.
    host_b = start_server("start_with_celery", extra_args=["--no-web"],
                          instance=tmp_path / "b", NODE_NAME=node_b, **env)
    wait_for(lambda: lease_node(current_database_url()) == node_b, 90, 0.3,
             "host B holding the reconciler lease")
    host_a = start_server("start_with_celery", instance=tmp_path / "a", NODE_NAME=node_a,
                          **env)
    host_a.wait_healthy(90)
    host_a.wait_workers(1, timeout=90)
    admin = host_a.headers()

    def both_hosts_running():
        body = status(host_a, admin)
        hosts = {h["node"]: h for h in body["hosts"] or []}
        ready = all(h["alive"] and any(w["state"] == "RUNNING" for w in h["workers"])
                    for h in hosts.values())
        return body if set(hosts) == {node_a, node_b} and ready else None
    body = wait_for(both_hosts_running, 90, 0.3, "both hosts with a running worker")
    assert {h["node"]: h["role"] for h in body["hosts"]} == {node_a: "web", node_b: "worker"}
    assert body["node"] == node_a
    assert body["reconciler"]["node"] == node_b, body["reconciler"]
    token_on_b = body["reconciler"]["token"]

    # Admin commands act on the named host's workers (default: this host).
    restarted = host_a.post("/api/celery/restart", headers=admin,
                            json={"host": node_b, "queue": "default"})
    assert restarted.status_code == 200, restarted.text
    assert [w["name"] for w in restarted.json()["workers"]] == [f"default@{node_b}"]
    unknown = host_a.post("/api/celery/stop", headers=admin, json={"host": "nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_host"
    bad = host_a.post("/api/celery/stop", headers=admin, json={"host": "a@b"})
    assert bad.status_code == 400, bad.text
    wait_for(both_hosts_running, 60, 0.3, "B's worker running again")

    ids = []
    for _ in range(JOBS):
        response = host_a.post("/api/jobs/calibration", headers=admin,
                               json={"paper_size": "letter"})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    url = current_database_url()

    def b_is_running_jobs():
        rows = job_rows(url, ids).values()
        on_b = [r for r in rows if r["status"] == "running" and node_b in (r["worker"] or "")]
        done = sum(r["status"] == "succeeded" for r in rows)
        return on_b if on_b and done >= 10 else None
    wait_for(b_is_running_jobs, 60, 0.1, "host B running jobs mid-run")
    kill_host(host_b)
    killed_at = time.monotonic()

    def b_lost():
        body = status(host_a, admin)
        return body if host_states(body).get(node_b) == "lost" else None
    body = wait_for(b_lost, 15, 0.2, "host B shown lost")
    assert time.monotonic() - killed_at < 3 * 1 + 5   # 3 intervals, plus a beat and a poll
    assert host_states(body)[node_a] == "alive"
    gone = host_a.post("/api/celery/restart", headers=admin, json={"host": node_b})
    assert gone.status_code == 409 and gone.json()["error"]["code"] == "host_lost"

    def lease_on_a():
        lease = status(host_a, admin)["reconciler"]
        return lease if lease and lease["node"] == node_a else None
    lease = wait_for(lease_on_a, 15, 0.2, "the reconciler lease on host A")
    assert lease["token"] > token_on_b

    def all_finished():
        rows = job_rows(url, ids)
        return rows if all(r["status"] in ("succeeded", "failed") for r in rows.values()) \
            else None
    rows = wait_for(all_finished, 90, 0.5, "every job finished")
    assert [r["id"] for r in rows.values() if r["status"] != "succeeded"] == []
    moved = [r for r in rows.values() if "requeued" in (r["message"] or "")
             or r["attempts"] > 1]
    # Each job completed once: its finish time and output stand, nothing changes later.
    time.sleep(2)
    again = job_rows(url, ids)
    assert {i: r["finished_at"] for i, r in again.items()} == \
        {i: r["finished_at"] for i, r in rows.items()}
    assert all((tmp_path / "storage" / r["output_path"]).is_file() for r in rows.values())
    assert moved, "host B's jobs were brought back"
    assert host_a.stop() == 0
