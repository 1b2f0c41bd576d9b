"""One supervised program (a queue's Celery worker, or the embedded Redis) across restarts.

A slot is what the operator sees as "the pdf_offset worker": it outlives each
child process (`WorkerProcess`) and keeps the history the status shows:
state, restarts by reason, last exit, last error. Only the manager's thread
mutates it.

Also here: the plain functions that decide what to run: how the total
concurrency is split between queues, and a worker's command line and
environment.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import KNOWN_QUEUES, Settings
from app.supervisor.policy import RestartPolicy
from app.supervisor.process import ExitInfo, ProcessStats, WorkerProcess

STARTING = "STARTING"
RUNNING = "RUNNING"
BACKOFF = "BACKOFF"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
FAILED = "FAILED"

REASONS = ("crash", "hang", "memory", "manual")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Settings the worker child does not need and should not hold.
SECRETS_NOT_PASSED = ("ADMIN_PASSWORD",)


@dataclass
class Slot:
    name: str                 # Celery node name ("pdf_offset@host") or "redis"
    kind: str                 # "worker" or "redis"
    queue: str | None
    pool_size: int
    policy: RestartPolicy
    state: str = STOPPED
    proc: WorkerProcess | None = None
    restarts: int = 0
    restarts_by_reason: dict = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    last_exit: ExitInfo | None = None
    last_error: str | None = None
    responsive: bool = False
    ping_misses: int = 0
    answered: bool = False          # the current child answered a ping at least once
    last_life_ok: bool = True       # the previous child got to RUNNING (not crash-looping)
    backoff_until: float | None = None
    stop_phase: str | None = None   # term -> quit -> kill
    stop_deadline: float | None = None
    after_stop: str = STOPPED       # STOPPED, FAILED, "restart" or "remove"
    stop_reason: str | None = None
    pending_delay: float = 0.0      # backoff to apply once a stopping child has exited
    backoff_why: str = "restart"
    stats: ProcessStats | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.alive else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    def count_restart(self, reason: str) -> None:
        self.restarts += 1
        self.restarts_by_reason[reason] = self.restarts_by_reason.get(reason, 0) + 1

    def describe(self) -> dict:
        proc = self.proc if self.alive else None
        stats = self.stats if proc is not None else None
        return {
            "name": self.name,
            "queue": self.queue,
            "pid": self.pid,
            "state": self.state,
            "pool_size": self.pool_size,
            "started_at": proc.started_at if proc else None,
            "uptime": round(proc.uptime(), 3) if proc else 0.0,
            "restarts": self.restarts,
            "restarts_by_reason": dict(self.restarts_by_reason),
            "last_exit": self.last_exit.as_dict() if self.last_exit else None,
            "last_error": self.last_error,
            "responsive": self.responsive if proc else False,
            "cpu_percent": stats.cpu_percent if stats else None,
            "rss_bytes": stats.rss_bytes if stats else None,
            "memory_bytes": stats.memory_bytes if stats else None,
            "log_file": str(self.proc.log.path) if self.proc else None,
        }


def node_name(queue: str) -> str:
    """What `-n <queue>@%h` expands to inside the worker."""
    return f"{queue}@{socket.gethostname()}"


def split_concurrency(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Pool size per queue: proportional to weight (largest remainder), at least 1 each."""
    if not weights:
        return {}
    if total <= len(weights):
        return dict.fromkeys(weights, 1)
    weight_sum = sum(weights.values())
    ideal = {q: total * w / weight_sum for q, w in weights.items()}
    sizes = {q: max(1, int(ideal[q])) for q in weights}
    # Raising a tiny share to 1 may overshoot: take it back from the largest pools.
    while sum(sizes.values()) > total:
        biggest = max(sizes, key=lambda q: (sizes[q], -ideal[q]))
        sizes[biggest] -= 1
    by_remainder = sorted(weights, key=lambda q: ideal[q] - sizes[q], reverse=True)
    for queue in by_remainder[:total - sum(sizes.values())]:
        sizes[queue] += 1
    return sizes


def parse_queues(queues) -> dict[str, int]:
    """Queue list (or comma string) with repeats as weights -> {queue: weight}, validated."""
    if isinstance(queues, str):
        queues = [part.strip() for part in queues.split(",") if part.strip()]
    if not isinstance(queues, (list, tuple)) or not queues or \
            not all(isinstance(q, str) for q in queues):
        raise ValueError("queues must be a non-empty list of queue names")
    unknown = sorted(set(queues) - set(KNOWN_QUEUES))
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(KNOWN_QUEUES)}")
    weights: dict[str, int] = {}
    for name in queues:
        weights[name] = weights.get(name, 0) + 1
    return weights


def worker_argv(app_module: str, queue: str, pool_size: int, log_level: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app_module, "worker",
            "-Q", queue, "-c", str(pool_size), "-n", f"{queue}@%h", "-E",
            "--loglevel", log_level.upper(),
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
    return str(value)
