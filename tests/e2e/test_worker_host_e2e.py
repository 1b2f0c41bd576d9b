"""`start_with_celery.py --no-web`: a worker-only host (the compose `worker` service)."""
from __future__ import annotations

import signal

import pytest

from app.celery_config import TASK_HEALTH, make_celery
from app.queue_names import KNOWN_QUEUES
from app.supervisor.control import ManagerHandle
from tests.conftest import make_settings, wait_for

pytestmark = pytest.mark.slow


def test_worker_only_host_consumes_and_stops_cleanly(start_server, redis_server, tmp_path):
    instance = tmp_path / "worker-host"
    server = start_server("start_with_celery", extra_args=["--no-web"], instance=instance,
                          START_CELERY_WORKER="true", REDIS_URL=redis_server.url)
    settings = make_settings(tmp_path, INSTANCE_PATH=instance, REDIS_URL=redis_server.url)
    handle = ManagerHandle(settings)  # what a web process on this host would use
    try:
        def all_running():
            server.observe()
            assert server.proc.poll() is None, server.tail()
            health = handle.health()
            return health if health["workers"] == {"running": 3, "expected": 3} else None
        assert wait_for(all_running, 90, 0.3, message="three workers")["mode"] == "celery"
        assert not any("gunicorn" in " ".join(p.cmdline()) for p in server.observe())
        with pytest.raises(OSError):  # no HTTP server on the port
            server.session.get(server.url + "/api/celery/health", timeout=2)

        client = make_celery(settings, role="client")
        try:
            results = [client.send_task(TASK_HEALTH, queue=queue, routing_key=queue)
                       for queue in KNOWN_QUEUES]
            nodes = {result.get(timeout=60)["node"].split("@")[0] for result in results}
        finally:
            client.close()
        assert nodes == set(KNOWN_QUEUES)  # every queue's own worker consumed its task
    finally:
        handle.close()
    assert server.stop(signal.SIGTERM, timeout=60) == 0  # and no process is left
    assert "stopped" in server.tail()
