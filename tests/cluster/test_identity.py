"""NODE_NAME and CELERY_QUEUE_PREFIX: the default node name, validation, where the
prefix goes."""
from __future__ import annotations

import socket

import pytest

from app.celery_config import make_celery
from app.settings import Settings, SettingsError, load_settings


def _settings(tmp_path, **values) -> Settings:
    return Settings(_env_file=None, APP_ENV="testing", INSTANCE_PATH=tmp_path, **values)


def test_default_node_name_is_host_plus_an_id_kept_in_the_instance(tmp_path):
    first = _settings(tmp_path / "a").node_name
    host = socket.gethostname().split(".")[0]
    assert first.startswith(f"{host}-") and len(first) > len(host) + 4
    node_id = (tmp_path / "a" / "run" / "node_id").read_text().strip()
    assert first == f"{host}-{node_id}"
    # The same folder gives the same name (a restart); another folder another name.
    assert _settings(tmp_path / "a").node_name == first
    assert _settings(tmp_path / "b").node_name != first


def test_node_name_setting_wins(tmp_path):
    assert _settings(tmp_path, NODE_NAME="web-1.eu").node_name == "web-1.eu"
    assert not (tmp_path / "run" / "node_id").exists()


@pytest.mark.parametrize("name, value", [
    ("NODE_NAME", "a@b"), ("NODE_NAME", "has space"), ("NODE_NAME", "x/1"),
    ("NODE_NAME", "-leading"), ("NODE_NAME", "n" * 64),
    ("CELERY_QUEUE_PREFIX", "a b"), ("CELERY_QUEUE_PREFIX", "a/b"),
    ("CELERY_QUEUE_PREFIX", "p" * 49),
])
def test_bad_values_stop_the_start_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_the_prefix_names_every_queue_and_exchange_on_the_broker(tmp_path):
    settings = _settings(tmp_path, CELERY_QUEUE_PREFIX="blue.", NODE_NAME="n1")
    conf = make_celery(settings, role="client").conf
    assert {q.name for q in conf.task_queues} == {
        "blue.pdf_generation", "blue.pdf_offset", "blue.default"}
    assert {q.routing_key for q in conf.task_queues} == {q.name for q in conf.task_queues}
    assert conf.task_default_queue == "blue.default"
    assert conf.task_routes["scm.generate_sheets"]["queue"] == "blue.pdf_generation"
    assert conf.control_exchange == "blue.celery" and conf.event_exchange == "blue.celeryev"
    assert settings.our_queue("blue.default") == "default"
    assert settings.our_queue("default") is None and settings.our_queue("green.default") is None


def test_no_prefix_keeps_todays_names(tmp_path):
    conf = make_celery(_settings(tmp_path), role="client").conf
    assert conf.task_default_queue == "default" and conf.control_exchange == "celery"


def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tests.conftest import free_port

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SCM_ENV_FILE": "",
           "APP_ENV": "testing", "INSTANCE_PATH": str(tmp_path / "i"),
           "EMBEDDED_REDIS": "false", "START_CELERY_WORKER": "false",
           "DATABASE_URL": f"postgresql+psycopg://u:secret@127.0.0.1:{free_port()}/x"}
    result = subprocess.run([sys.executable, str(root / "start_with_celery.py"), "--no-web"],
                            env=env, capture_output=True, text=True, timeout=60, cwd=root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the database"), lines
    assert "secret" not in result.stderr and "Traceback" not in result.stderr
