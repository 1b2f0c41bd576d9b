"""make_celery: the configuration issue 3 asks for, and rate-limit parsing."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app.celery_config import (
    QUEUE_FOR_TASK,
    TASK_FOR_KIND,
    TASK_GENERATE,
    TASK_OFFSET,
    make_celery,
    parse_rate_limits,
)
from app.settings import SettingsError
from tests.conftest import make_settings
from tests.jobs.conftest import ROOT


def test_configuration(tmp_path):
    settings = make_settings(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0",
                             CELERY_WORKER_TIMEOUT=100, CELERY_MAX_MEMORY_MB=512,
                             CELERY_TASK_RATE_LIMITS="generate_sheets=10/m, offset_sheets=2/s")
    conf = make_celery(settings).conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert {q.name for q in conf.task_queues} == {"pdf_generation", "pdf_offset", "default"}
    assert conf.task_routes[TASK_GENERATE]["queue"] == "pdf_generation"
    assert conf.task_routes[TASK_OFFSET]["queue"] == "pdf_offset"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit == 100 and conf.task_soft_time_limit == 80
    assert conf.worker_max_tasks_per_child == 1000
    assert conf.worker_max_memory_per_child == 512 * 1024
    assert conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout
    assert conf.result_backend_transport_options["visibility_timeout"] == \
        settings.visibility_timeout
    assert settings.visibility_timeout > conf.task_time_limit
    assert conf.broker_connection_retry_on_startup
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert conf.task_annotations == {TASK_GENERATE: {"rate_limit": "10/m"},
                                     TASK_OFFSET: {"rate_limit": "2/s"}}
    assert conf.result_backend == "redis://127.0.0.1:1/0"


def test_client_role_fails_fast(tmp_path):
    settings = make_settings(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    client = make_celery(settings, role="client").conf
    worker = make_celery(settings).conf
    assert client.broker_transport_options["socket_timeout"] <= 2
    assert client.broker_transport_options["socket_connect_timeout"] <= 1
    assert client.task_publish_retry_policy["max_retries"] <= 1
    assert worker.broker_transport_options["socket_timeout"] > \
        client.broker_transport_options["socket_timeout"]
    with pytest.raises(ValueError):
        make_celery(settings, role="bogus")


def test_every_kind_has_a_task_and_queue():
    assert set(TASK_FOR_KIND) == {"sheets", "offset", "calibration"}
    assert all(task in QUEUE_FOR_TASK for task in TASK_FOR_KIND.values())


@pytest.mark.parametrize("text", ["generate_sheets", "bogus=1/m", "generate_sheets=fast",
                                  "generate_sheets=10/d", "=10/m"])
def test_bad_rate_limits_are_refused(text):
    with pytest.raises(SettingsError):
        parse_rate_limits(text)


def test_rate_limits_accept_full_names_and_blanks():
    assert parse_rate_limits("") == {}
    assert parse_rate_limits(" scm.health_check=1.5/s ,") == {"scm.health_check": "1.5/s"}


def test_importing_celery_app_starts_nothing(tmp_path):
    code = ("import threading, celery_app; "
            "assert threading.active_count() == 1, threading.enumerate(); "
            "print(sorted(n for n in celery_app.celery.tasks if n.startswith('scm.')))")
    env = {"PATH": "/usr/bin:/bin", "INSTANCE_PATH": str(tmp_path / "i"),
           "CELERY_BROKER_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "scm.calibration_sheet" in out.stdout and "scm.cleanup_outputs" in out.stdout
    assert not (tmp_path / "i").exists()  # not even the instance folder
