"""Several hosts of one deployment on this machine: the environment they share and
what a test reads from them (status hosts, the reconciler lease, the job store)."""
from __future__ import annotations

import os
import signal

import psutil
import sqlalchemy as sa

from app.db.schema import jobs


def cluster_env(storage, **extra) -> dict[str, str]:
    """Settings every host of the test deployment shares (the database comes from the
    test's PostgreSQL backend, the broker from the caller)."""
    env = {
        "STORAGE_DIR": str(storage),
        "START_CELERY_WORKER": "true",
        "CELERY_QUEUES": "default",          # calibration jobs: one worker per host
        "CELERY_CONCURRENCY": "4",
        "CELERY_HEALTH_CHECK_INTERVAL": "1",  # lost after 3 s without a heartbeat
        "CLUSTER_LEASE_SECONDS": "3",
        "JOB_TEST_SLEEP_SECONDS": "0.4",
        "JOB_SUBMIT_RATE_LIMIT": "10000 per minute",
        "JOB_MAX_ACTIVE_PER_USER": "1000",
        "JOB_IN_FLIGHT_PER_USER": "1000",
        "GUNICORN_WORKERS": "1",
    }
    env.update({key: str(value) for key, value in extra.items()})
    return env


def kill_host(server) -> None:
    """A host dies: SIGKILL its whole process group, then anything of it still alive
    (the workers run in process groups of their own)."""
    server.observe()
    try:
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.kill_all()
    server.proc.wait(10)
    psutil.wait_procs(_alive(server), timeout=10)


def _alive(server) -> list[psutil.Process]:
    found = []
    for pid, created in server.seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def status(server, headers) -> dict:
    response = server.get("/api/celery/status", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def host_states(body: dict) -> dict[str, str]:
    return {host["node"]: host["state"] for host in body.get("hosts") or []}


def job_rows(database_url: str, ids) -> dict[str, dict]:
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(jobs).where(jobs.c.id.in_(list(ids)))).mappings()
            return {row["id"]: dict(row) for row in rows}
    finally:
        engine.dispose()


def lease_node(database_url: str) -> str | None:
    """The node holding the reconciler lease, read from the database (None: nobody yet)."""
    from app.cluster.lease import RECONCILER
    from app.db.schema import cluster_leases

    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            holder = conn.execute(sa.select(cluster_leases.c.holder).where(
                cluster_leases.c.name == RECONCILER)).scalar_one_or_none()
    except sa.exc.DBAPIError:
        return None   # the table is not made yet (B still migrating)
    finally:
        engine.dispose()
    return holder.partition("/")[0] if holder else None
