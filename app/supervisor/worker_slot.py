"""One supervised program (a queue's Celery worker, or the embedded Redis) across restarts.

A slot is what the operator sees as "the pdf_offset worker": it outlives each
child process (`WorkerProcess`) and keeps the history the status shows:
state, restarts by reason, last exit, last error. Only the manager's thread
mutates it.

Its state changes only through `move(event)`, along the one table below
(supervisord's process state machine), and the only "give up or count and
restart" decision is `restart_for(reason, now)`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from app.supervisor.policy import Decision, RestartPolicy
from app.supervisor.process import ExitInfo, ProcessStats, WorkerProcess

STARTING = "STARTING"
RUNNING = "RUNNING"
BACKOFF = "BACKOFF"
STOPPING = "STOPPING"
STOPPED = "STOPPED"
FAILED = "FAILED"
STATES = (STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, FAILED)

REASONS = ("crash", "hang", "memory", "manual")

# Every transition a slot can make: event -> (states it may happen in, new state).
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    # a child is forked (boot, start, restart, end of backoff, FAILED's cool-down)
    "spawn": (frozenset({STOPPED, BACKOFF, FAILED}), STARTING),
    # it answered a ping (or, with the broker down, stayed alive STARTSECS)
    "ready": (frozenset({STARTING}), RUNNING),
    # a warm or hard stop began (operator stop, restart, hang, memory, stall, shutdown)
    "stop": (frozenset({STARTING, RUNNING, STOPPING}), STOPPING),
    # it died (or was stopped to be restarted): spawn again after a delay
    "backoff": (frozenset({STARTING, RUNNING, STOPPING}), BACKOFF),
    # restart_for gave up: a crash loop
    "give_up": (frozenset({STARTING, RUNNING, STOPPING}), FAILED),
    # not wanted any more (stop, shutdown, removed from the plan)
    "stopped": (frozenset(STATES), STOPPED),
}


class InvalidTransition(RuntimeError):
    pass


@dataclass
class WorkerSlot:
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
    ready_at: float | None = None   # when the current child got to RUNNING (clock time)
    last_life_ok: bool = True       # the previous child got to RUNNING (dispatch may wait for it)
    backoff_until: float | None = None
    stop_phase: str | None = None   # term -> quit -> kill
    stop_deadline: float | None = None
    after_stop: str = STOPPED       # STOPPED, FAILED, "restart" or "remove"
    pending_delay: float = 0.0      # backoff to apply once a stopping child has exited
    backoff_why: str = "restart"
    failures: int = 0               # FAILED in a row (the cool-down grows with it)
    retry_at: float | None = None   # (clock time) FAILED tries again then
    retry_at_wall: float | None = None
    stats: ProcessStats | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.alive else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive

    @property
    def process(self) -> WorkerProcess:
        """The current child: there is one from a spawn that worked until the next spawn,
        so in STARTING, RUNNING and STOPPING (and whenever `alive`)."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} has no process ({self.state})")
        return self.proc

    def move(self, event: str) -> None:
        allowed, target = TRANSITIONS[event]
        if self.state not in allowed:
            raise InvalidTransition(f"{self.name}: {event!r} is not allowed in {self.state}")
        self.state = target
        if target != BACKOFF:
            self.backoff_until = None
        if target != FAILED:
            self.retry_at = self.retry_at_wall = None

    def was_healthy(self, now: float, healthy_after: float) -> bool:
        """Whether the current child had been RUNNING for `healthy_after` by `now`."""
        return self.ready_at is not None and now - self.ready_at >= healthy_after

    def restart_for(self, reason: str, now: float, healthy_after: float) -> Decision:
        """The one decision after a death or a forced restart: give up, or count it and
        restart after a delay. Only a child that never became healthy counts toward
        giving up (a crash loop); a serving worker that got killed, or that a job drove
        over its memory limit, always restarts."""
        self.last_life_ok = self.ready_at is not None
        counts = not self.was_healthy(now, healthy_after)
        if reason == "memory" and self.answered:
            # A serving worker restarted for memory: the job that drove it over the
            # limit is failed for it (Fleet._memory_restart), the worker is not to blame.
            counts = False
        decision = self.policy.on_exit(now, counts=counts)
        if decision.gives_up:
            self.failures += 1
            cool_down = self.policy.cool_down(self.failures)
            self.retry_at, self.retry_at_wall = now + cool_down, time.time() + cool_down
            self.last_error = (f"gave up after {decision.restarts_in_window} restarts in "
                               f"{self.policy.window:.0f}s; last: "
                               f"{self.last_error or 'no error recorded'}")
        else:
            self.count_restart(reason)
        return decision

    def clear_failures(self) -> None:
        """An operator started or restarted it: a fresh history."""
        self.policy.reset()
        self.failures = 0
        self.retry_at = self.retry_at_wall = None

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
            "failures": self.failures,
            "next_retry_at": self.retry_at_wall if self.state == FAILED else None,
        }
