"""How concurrency is split, how queues are parsed, what a worker child gets."""
from __future__ import annotations

import pytest

from app.supervisor.worker_slot import child_env, parse_queues, split_concurrency, worker_argv
from tests.conftest import make_settings


@pytest.mark.parametrize("total, weights, expected", [
    (3, {"pdf_generation": 1, "pdf_offset": 1, "default": 1},
     {"pdf_generation": 1, "pdf_offset": 1, "default": 1}),
    (8, {"pdf_generation": 3, "pdf_offset": 1, "default": 1},
     {"pdf_generation": 5, "pdf_offset": 2, "default": 1}),
    (2, {"pdf_generation": 3, "pdf_offset": 1, "default": 1},   # at least one each
     {"pdf_generation": 1, "pdf_offset": 1, "default": 1}),
    (10, {"default": 1}, {"default": 10}),
    (4, {"pdf_generation": 10, "pdf_offset": 1, "default": 1},
     {"pdf_generation": 2, "pdf_offset": 1, "default": 1}),
    (5, {"pdf_generation": 3, "pdf_offset": 1, "default": 1},
     {"pdf_generation": 3, "pdf_offset": 1, "default": 1}),
])
def test_split_concurrency(total, weights, expected):
    sizes = split_concurrency(total, weights)
    assert sizes == expected
    assert sum(sizes.values()) == max(total, len(weights))


def test_parse_queues_counts_repeats_as_weight():
    assert parse_queues("pdf_generation,pdf_generation,default") == {"pdf_generation": 2,
                                                                     "default": 1}
    assert parse_queues(["default"]) == {"default": 1}
    for bad in ([], "", ["nope"], [1], "default,nope"):
        with pytest.raises(ValueError):
            parse_queues(bad)


def test_worker_argv_is_the_documented_command():
    argv = worker_argv("celery_app", "pdf_offset", 2, "info")
    assert argv[1:] == ["-m", "celery", "-A", "celery_app", "worker", "-Q", "pdf_offset",
                        "-c", "2", "-n", "pdf_offset@%h", "-E", "--loglevel", "INFO",
                        "--without-mingle", "--without-gossip"]


def test_child_env_rebuilds_the_same_settings(tmp_path, monkeypatch):
    settings = make_settings(tmp_path, CELERY_QUEUES="default,pdf_offset",
                             CELERY_WORKER_TIMEOUT=100, ADMIN_PASSWORD="secret-pass",
                             START_CELERY_WORKER=True)
    monkeypatch.setenv("REDIS_URL", "redis://leaked-from-the-shell:6379/0")
    env = child_env(settings, broker_url="redis://127.0.0.1:1/0",
                    result_backend="redis://127.0.0.1:1/1")
    assert env["CELERY_BROKER_URL"] == "redis://127.0.0.1:1/0"
    assert env["CELERY_RESULT_BACKEND"] == "redis://127.0.0.1:1/1"
    assert env["INSTANCE_PATH"] == str(settings.INSTANCE_PATH)
    assert env["CELERY_QUEUES"] == "default,pdf_offset"
    assert env["CELERY_WORKER_TIMEOUT"] == "100"
    assert env["START_CELERY_WORKER"] == "false"
    assert "ADMIN_PASSWORD" not in env
    assert "REDIS_URL" not in env          # the shell's value must not reach the worker
    assert "PATH" in env
