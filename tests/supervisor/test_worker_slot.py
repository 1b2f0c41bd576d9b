"""How concurrency is split, how queues are parsed, what a worker child gets."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.queue_names import parse_queues
from app.queue_names import split_concurrency
from app.supervisor.plan import child_env, worker_argv
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
    settings = make_settings(Path("/nonexistent"), NODE_NAME="web1", CELERY_LOG_LEVEL="info",
                             CELERY_QUEUE_PREFIX="blue.")
    argv = worker_argv(settings, "celery_app", "pdf_offset", 2)
    assert argv[1:] == ["-m", "celery", "-A", "celery_app", "worker", "-Q", "blue.pdf_offset",
                        "-c", "2", "-n", "pdf_offset@web1", "-E", "--loglevel", "INFO",
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


# --- the state machine and its one restart decision ------------------------------------
from app.supervisor.policy import RestartPolicy  # noqa: E402
from app.supervisor.worker_slot import (  # noqa: E402
    BACKOFF,
    FAILED,
    RUNNING,
    STARTING,
    STOPPED,
    TRANSITIONS,
    InvalidTransition,
    WorkerSlot,
)


def _slot(max_restarts=2, retry_after=10.0):
    policy = RestartPolicy(max_restarts, 300.0, 1.0, jitter=0, retry_after=retry_after,
                           retry_max=25.0)
    return WorkerSlot("default@h", "worker", "default", 1, policy)


def test_every_transition_is_in_the_table_and_nothing_else_is_allowed():
    slot = _slot()
    assert set(TRANSITIONS) == {"spawn", "ready", "stop", "backoff", "give_up", "stopped"}
    with pytest.raises(InvalidTransition):
        slot.move("ready")                 # STOPPED cannot become RUNNING without a child
    slot.move("spawn")
    slot.move("ready")
    assert slot.state == RUNNING
    with pytest.raises(InvalidTransition):
        slot.move("spawn")                 # one child per slot


def test_a_healthy_worker_killed_again_and_again_never_gives_up():
    slot = _slot(max_restarts=2)
    now = 1000.0
    for _ in range(20):
        slot.move("spawn")
        slot.move("ready")
        slot.ready_at = now
        now += 6.0                                        # served 6 s (> healthy_after)
        decision = slot.restart_for("crash", now, healthy_after=5.0)
        assert not decision.gives_up and decision.delay == 1.0
        slot.move("backoff")
    assert slot.restarts == 20 and slot.failures == 0


def test_a_crash_loop_gives_up_and_the_cool_down_grows():
    slot = _slot(max_restarts=2, retry_after=10.0)
    now = 1000.0
    outcomes = []
    for _ in range(3):
        slot.move("spawn")                                # never answered
        decision = slot.restart_for("crash", now, healthy_after=5.0)
        outcomes.append(decision.gives_up)
        slot.move("give_up" if decision.gives_up else "backoff")
    assert outcomes == [False, False, True] and slot.state == FAILED
    assert slot.retry_at == now + 10.0 and slot.describe()["next_retry_at"] is not None
    slot.move("spawn")                                    # the cool-down's one try
    assert slot.restart_for("crash", now + 11, healthy_after=5.0).gives_up
    assert slot.failures == 2 and slot.retry_at == now + 11 + 20.0
    slot.move("give_up")
    slot.clear_failures()                                 # an operator's start
    assert slot.failures == 0 and slot.retry_at is None
    slot.move("spawn")
    assert slot.state == STARTING
    assert not slot.restart_for("crash", now + 12, healthy_after=5.0).gives_up
    slot.move("backoff")
    assert slot.state == BACKOFF
    slot.move("stopped")
    assert slot.state == STOPPED


def test_memory_restarts_a_job_caused_are_not_the_workers_fault():
    """Issue 12: a serving worker that a job drove over its memory limit, right after
    it started (not yet healthy), restarts however often; a crash does count."""
    slot = _slot(max_restarts=1)
    now = 1000.0
    for _ in range(5):
        slot.move("spawn")
        slot.move("ready")
        slot.answered, slot.ready_at = True, now
        now += 1.0                                        # not healthy_after yet
        assert not slot.restart_for("memory", now, healthy_after=5.0).gives_up
        slot.move("backoff")
    assert slot.restarts_by_reason["memory"] == 5 and slot.failures == 0
    slot.move("spawn")                                    # never answered a ping: counts
    slot.answered, slot.ready_at = False, None            # (what Fleet.spawn resets)
    assert not slot.restart_for("memory", now, healthy_after=5.0).gives_up
    slot.move("backoff")
    slot.move("spawn")
    assert slot.restart_for("crash", now + 1, healthy_after=5.0).gives_up
