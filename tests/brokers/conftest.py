"""Brokers other than Redis, as real services: RabbitMQ (a vhost of our own per module,
made with rabbitmqctl and deleted after) and SQS through moto's server.

No real SQS can run on this machine; moto's server (`moto[server]`, a PyPI emulator of
the SQS HTTP API) stands in for it, started on a free port per test module. Everything
else (Redis result backend, PostgreSQL, Celery workers) is real.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest

from app.metrics import SupervisorCollector
from app.supervisor.api import HANDLE_KEY
from tests.conftest import free_port, make_settings
from tests.supervisor.conftest import client_app, managers, no_leftovers  # noqa: F401
from tests.web.test_metrics import samples

RABBIT = "127.0.0.1:5672"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, timeout=60,
                   stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def rabbit_vhost():
    """amqp:// URL of a vhost of our own; never touches others' vhosts."""
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to make a private vhost")
    name = f"scm-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", name)
    try:
        _rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBIT}/{quote(name, safe='')}"
    finally:
        _rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="module")
def moto_sqs(tmp_path_factory):
    """Base URL of a moto server (SQS emulator) on a free port; stopped at the end."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=0.5)
            break
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def sqs_settings(tmp_path, port: int, result_backend: str, **overrides):
    """Settings for SQS on moto: the endpoint is the URL's host:port, plain HTTP through
    CELERY_BROKER_TRANSPORT_OPTIONS, and a queue name prefix per test so tests sharing
    the server never share queues."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    values = dict(
        CELERY_BROKER_URL=f"sqs://test:test@127.0.0.1:{port}",
        CELERY_RESULT_BACKEND=result_backend,
        CELERY_BROKER_TRANSPORT_OPTIONS={"region": "us-east-1", "is_secure": False,
                                         "queue_name_prefix": prefix,
                                         "wait_time_seconds": 1, "polling_interval": 0.2},
        START_CELERY_WORKER=True, CELERY_HEALTH_CHECK_INTERVAL=1.0,
        CELERY_RESTART_DELAY=0.2, CELERY_STOP_TIMEOUT=10)
    values.update(overrides)
    return make_settings(tmp_path, **values)


class _App:
    """The one thing SupervisorCollector reads: the manager handle's status()."""

    def __init__(self, manager):
        self.extensions = {HANDLE_KEY: manager}


def scrape(manager) -> dict:
    """The supervisor metrics of a real manager, parsed: {(name, labels): value}."""
    registry = CollectorRegistry()
    registry.register(SupervisorCollector(_App(manager)))
    return samples(generate_latest(registry).decode())
