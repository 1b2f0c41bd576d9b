"""The worker plan: what to run for each queue (pool sizes, command line, environment).

Plain functions plus `WorkerPlan`, which turns a slot into a child process through
the process factory the manager was given (a test passes a fake one).
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.settings import Settings
from app.supervisor.logfile import LogFile
from app.supervisor.process import WorkerProcess
from app.supervisor.redis_server import EmbeddedRedis

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Settings the worker child does not need and should not hold.
SECRETS_NOT_PASSED = ("ADMIN_PASSWORD",)
TEST_FAIL_EXIT = 3

ProcessFactory = Callable[..., WorkerProcess]


def node_name(settings: Settings, queue: str) -> str:
    """The Celery node name of this host's worker for `queue` (`-n` of its command)."""
    return f"{queue}@{settings.node_name}"


def worker_argv(settings: Settings, app_module: str, queue: str, pool_size: int) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app_module, "worker",
            "-Q", settings.broker_queue(queue), "-c", str(pool_size),
            "-n", node_name(settings, queue), "-E",
            "--loglevel", settings.CELERY_LOG_LEVEL.upper(),
            # Mingle waits a second for other nodes at start, gossip makes every worker
            # follow every other's events: neither is needed with one worker per queue.
            "--without-mingle", "--without-gossip"]


def child_env(settings: Settings, *, broker_url: str | None,
              result_backend: str | None) -> dict[str, str]:
    """The environment a worker child needs to rebuild the same Settings."""
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    for name in Settings.model_fields:
        if name in SECRETS_NOT_PASSED:
            continue
        value = getattr(settings, name)
        if value is None:
            continue
        env[name] = _env_value(value)
    env["START_CELERY_WORKER"] = "false"  # a worker child never spawns workers of its own
    env["NODE_NAME"] = settings.node_name  # the same name, without reading the id file
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    if result_backend:
        env["CELERY_RESULT_BACKEND"] = result_backend
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _env_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):  # the JSON settings (CELERY_*_TRANSPORT_OPTIONS)
        return json.dumps(value)
    return str(value)


class WorkerPlan:
    """Builds the child process for a slot: a queue's worker or the embedded Redis."""

    def __init__(self, settings: Settings, *, worker_app: str, broker_url: str | None,
                 result_backend: str | None, embedded: EmbeddedRedis | None,
                 process_factory: ProcessFactory = WorkerProcess):
        self.settings = settings
        self.worker_app = worker_app
        self.broker_url = broker_url
        self.result_backend = result_backend
        self.embedded = embedded
        self.process_factory = process_factory

    def process_for(self, name: str, queue: str | None, pool_size: int) -> WorkerProcess:
        env = child_env(self.settings, broker_url=self.broker_url,
                        result_backend=self.result_backend)
        if queue is None:  # the one slot without a queue runs the embedded Redis
            if self.embedded is None:
                raise RuntimeError(f"{name}: no queue, and no embedded Redis to run")
            return self.embedded.make_process(env, PROJECT_ROOT, factory=self.process_factory)
        fail = None
        if self.settings.CELERY_TEST_FAIL_QUEUE == queue:
            fail = (TEST_FAIL_EXIT, f"CELERY_TEST_FAIL_QUEUE={queue}: injected failure "
                                    "at worker start (test-only setting)")
        argv = worker_argv(self.settings, self.worker_app, queue, pool_size)
        # Its pool size now, which an admin may have changed since this process started:
        # the worker splits its memory between that many jobs (app/jobs/limits.py).
        env["CELERY_POOL_SIZE"] = str(pool_size)
        log_file = LogFile(self.settings.logs_dir / f"worker-{queue}.log")
        return self.process_factory(name, argv, env=env, cwd=PROJECT_ROOT, log=log_file,
                                    fail_at_start=fail)


def start_banner(name: str, why: str) -> str:
    return f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: starting {name} ({why}) ---"
