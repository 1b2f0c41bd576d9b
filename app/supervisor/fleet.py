"""The set of slots and what happens to their children (manager thread only).

Forks (through the worker plan's process factory), signals, reaps, stops with
escalation (SIGTERM -> SIGQUIT -> SIGKILL), runs the timers (backoff, FAILED's
cool-down, stats, log rotation) and applies the one restart decision
(`restart_for`). It never blocks and never touches the network: a worker's
death is handed to `on_lost` (run on the hooks thread by the manager).
"""
from __future__ import annotations

import logging
import selectors
import signal
from collections.abc import Callable

from app.settings import Settings
from app.supervisor.pidfile import StateFile
from app.supervisor.plan import WorkerPlan, node_name, start_banner
from app.supervisor.policy import RestartPolicy
from app.supervisor.process import ProcessStats, WorkerProcess
from app.supervisor.worker_slot import (
    BACKOFF,
    FAILED,
    REASONS,
    RUNNING,
    STARTING,
    STOPPING,
    WorkerSlot,
)

log = logging.getLogger(__name__)

QUIT_GRACE = 3.0          # SIGQUIT (cold shutdown) -> SIGKILL of the group
KILL_WAIT = 5.0           # after SIGKILL, how long before we stop waiting for the reap
STARTSECS = 3.0           # alive this long with the broker down counts as RUNNING (unverified)
STALL_STOP_TIMEOUT = 5.0  # a stalled worker has no task: its warm stop is quick
LOG_ROTATE_EVERY = 30.0

MEMORY_STOP_TIMEOUT = 5.0  # over its memory limit: a short warm stop, then the kill
# (slot, process, exit info) of a worker that died holding messages.
LostHandler = Callable[[WorkerSlot, WorkerProcess, object], None]
# (slot, pid of its biggest process, why): the job running there broke the worker's limit.
OverrunHandler = Callable[[WorkerSlot, "int | None", str], None]


class Fleet:
    def __init__(self, settings: Settings, plan: WorkerPlan, *, clock: Callable[[], float],
                 state_file: StateFile, on_lost: LostHandler | None = None,
                 redis_ready: Callable[[], bool] | None = None,
                 broker_up: Callable[[], bool] = lambda: True,
                 on_overrun: OverrunHandler | None = None):
        self.settings = settings
        self.plan = plan
        self.clock = clock
        self.state_file = state_file
        self.on_lost = on_lost
        self.on_overrun = on_overrun
        self.redis_ready = redis_ready
        self.broker_up = broker_up
        self.selector: selectors.BaseSelector | None = None
        self.weights = dict(settings.queue_weights)
        self.concurrency = settings.CELERY_CONCURRENCY
        self.wanted = False                      # workers should run (open/start vs stop)
        self.shutting_down = False
        self.slots: dict[str, WorkerSlot] = {}         # queue -> worker slot
        self.redis: WorkerSlot | None = None
        self.totals = dict.fromkeys(REASONS, 0)
        self._next_stats = 0.0
        self._next_rotate = 0.0

    # --- the set ------------------------------------------------------------------
    def all_slots(self) -> list[WorkerSlot]:
        return list(self.slots.values()) + ([self.redis] if self.redis is not None else [])

    def slot_named(self, name: str) -> WorkerSlot | None:
        return next((s for s in self.slots.values() if s.name == name), None)

    def new_policy(self) -> RestartPolicy:
        s = self.settings
        return RestartPolicy(s.CELERY_MAX_RESTARTS, s.CELERY_RESTART_WINDOW,
                             s.CELERY_RESTART_DELAY, retry_after=s.CELERY_FAILED_RETRY_AFTER,
                             retry_max=s.CELERY_FAILED_RETRY_MAX)

    def new_slot(self, queue: str, size: int) -> WorkerSlot:
        return WorkerSlot(node_name(self.settings, queue), "worker", queue, size, self.new_policy())

    def add_redis(self) -> WorkerSlot:
        self.redis = WorkerSlot("redis", "redis", None, 0, self.new_policy())
        return self.redis

    # --- children -----------------------------------------------------------------
    def spawn(self, slot: WorkerSlot, why: str) -> None:
        proc = self.plan.process_for(slot.name, slot.queue, slot.pool_size)
        proc.log.write_line(start_banner(slot.name, why))
        slot.move("spawn")
        slot.answered = slot.responsive = False
        slot.ping_misses = 0
        slot.ready_at = slot.stats = None
        try:
            proc.spawn()
        except OSError as exc:
            log.error("could not start %s: %s", slot.name, exc)
            slot.proc = None
            slot.last_error = f"could not start: {exc}"
            # Through BACKOFF (the loop's timer spawns again), never straight back into
            # spawn: with CELERY_RESTART_DELAY=0 that recursed once per attempt.
            self.restart_for(slot, "crash")
            return
        slot.proc = proc
        if proc.pidfd is not None and self.selector is not None:
            self.selector.register(proc.pidfd, selectors.EVENT_READ, slot)
        log.info("started %s (pid %s, %s)", slot.name, proc.pid, why)
        self.save_state()

    def mark_ready(self, slot: WorkerSlot) -> None:
        slot.move("ready")
        slot.ready_at = self.clock()

    def reap(self) -> None:
        for slot in self.all_slots():
            proc = slot.proc
            if proc is None or not proc.alive or not proc.has_exited():
                continue
            if proc.pidfd is not None and self.selector is not None:
                try:
                    self.selector.unregister(proc.pidfd)
                except (KeyError, ValueError):
                    pass
            exit_info = proc.reap()
            if exit_info is not None:
                self._on_exit(slot, proc, exit_info)

    def _on_exit(self, slot: WorkerSlot, proc: WorkerProcess, exit_info) -> None:
        slot.last_exit = exit_info
        slot.responsive = False
        slot.stats = None
        self.save_state()
        log_fn = log.info if exit_info.clean or slot.state == STOPPING else log.warning
        log_fn("%s (pid %s) %s", slot.name, proc.pid, exit_info.describe())
        if slot.kind == "worker" and not exit_info.clean and self.on_lost is not None:
            self.on_lost(slot, proc, exit_info)
        if slot.state == STOPPING:
            self._after_stop(slot)
            return
        slot.last_error = f"{exit_info.describe()}; log tail:\n{proc.log.tail(20)}"
        if self.shutting_down or (slot.kind == "worker" and not self.wanted):
            slot.move("stopped")
            return
        self.restart_for(slot, "crash")

    def _after_stop(self, slot: WorkerSlot) -> None:
        after, delay = slot.after_stop, slot.pending_delay
        slot.stop_phase = slot.stop_deadline = None
        if after == "restart" and not self.shutting_down:
            self._schedule_spawn(slot, delay, "restart")
        elif after == "remove":
            slot.move("stopped")
            if slot.queue is not None:  # only worker slots (keyed by queue) are removed
                self.slots.pop(slot.queue, None)
        elif after == FAILED:
            slot.move("give_up")
        else:
            slot.move("stopped")

    def restart_for(self, slot: WorkerSlot, reason: str, *, stop_timeout: float | None = None,
                    kill: bool = False) -> None:
        """Give up (FAILED) or count and restart: the slot decides, this applies it.

        A live child is stopped first (warm within `stop_timeout`, or killed)."""
        decision = slot.restart_for(reason, self.clock(), self.settings.CELERY_HEALTHY_AFTER)
        if decision.gives_up:
            log.error("%s is FAILED (next try in %.0fs): %s", slot.name,
                      slot.policy.cool_down(slot.failures), slot.last_error)
        elif slot.kind == "worker":  # the totals (health, metrics) count Celery workers
            self.totals[reason] = self.totals.get(reason, 0) + 1
        after = FAILED if decision.gives_up else "restart"
        if slot.alive:
            timeout = self.settings.CELERY_STOP_TIMEOUT if stop_timeout is None else stop_timeout
            self.begin_stop(slot, after, timeout, kill=kill, delay=decision.delay)
        elif decision.gives_up:
            slot.move("give_up")
        else:
            self._schedule_spawn(slot, decision.delay, f"{reason} restart")

    def count_manual(self, slot: WorkerSlot) -> None:
        slot.count_restart("manual")
        if slot.kind == "worker":
            self.totals["manual"] += 1

    def _schedule_spawn(self, slot: WorkerSlot, delay: float, why: str) -> None:
        """Always through BACKOFF: `tick` (later in the same loop iteration when the delay
        is 0) spawns it. Never calls `spawn` itself, so a spawn that fails cannot recurse."""
        slot.move("backoff")
        slot.backoff_until = self.clock() + max(0.0, delay)
        slot.backoff_why = why
        if delay > 0:
            log.info("%s restarts in %.2fs (backoff)", slot.name, delay)

    def begin_stop(self, slot: WorkerSlot, after: str, timeout: float, *, kill: bool = False,
                   delay: float = 0.0) -> None:
        slot.after_stop = after
        slot.pending_delay = delay
        slot.move("stop")
        now = self.clock()
        if kill:
            slot.process.signal_group(signal.SIGKILL)
            slot.stop_phase, slot.stop_deadline = "kill", now + KILL_WAIT
            return
        slot.process.signal(signal.SIGTERM)          # warm shutdown: running tasks finish
        slot.process.signal_group(signal.SIGCONT)    # a stopped process could not act on it
        slot.stop_phase, slot.stop_deadline = "term", now + timeout

    def _escalate_stop(self, slot: WorkerSlot, now: float) -> None:
        if slot.stop_phase == "term":
            log.warning("%s did not stop within the timeout; cold shutdown (SIGQUIT)", slot.name)
            slot.process.signal(signal.SIGQUIT)
            slot.stop_phase, slot.stop_deadline = "quit", now + QUIT_GRACE
        elif slot.stop_phase == "quit":
            log.warning("%s ignored SIGQUIT; killing its process group", slot.name)
            slot.process.signal_group(signal.SIGKILL)
            slot.stop_phase, slot.stop_deadline = "kill", now + KILL_WAIT
        else:
            slot.process.signal_group(signal.SIGKILL)
            slot.stop_deadline = now + KILL_WAIT

    def kill_all(self) -> None:
        """Out of time: nothing may outlive the manager, whatever state it is in."""
        for slot in self.all_slots():
            if slot.alive:
                log.error("%s did not stop; killing its process group", slot.name)
                slot.process.signal_group(signal.SIGKILL)

    # --- timers -------------------------------------------------------------------
    def tick(self, now: float) -> None:
        for slot in self.all_slots():
            if slot.state == BACKOFF and now >= (slot.backoff_until or 0):
                self._end_backoff(slot)
            elif slot.state == FAILED and slot.retry_at is not None and now >= slot.retry_at:
                if not self.shutting_down and (slot.kind == "redis" or self.wanted):
                    log.warning("%s: FAILED cool-down over, trying again", slot.name)
                    self.spawn(slot, f"retry after failure {slot.failures}")
            elif slot.state == STOPPING and slot.alive and slot.stop_deadline is not None \
                    and now >= slot.stop_deadline:
                self._escalate_stop(slot, now)
            elif slot.state == STARTING and slot.alive:
                self._check_started(slot)
        if now >= self._next_stats:
            self._next_stats = now + self.stats_interval
            self._collect_stats()
        if now >= self._next_rotate:
            self._next_rotate = now + LOG_ROTATE_EVERY
            self._rotate_logs()

    @property
    def stats_interval(self) -> float:
        return min(5.0, max(1.0, self.settings.CELERY_HEALTH_CHECK_INTERVAL))

    def _end_backoff(self, slot: WorkerSlot) -> None:
        # Never during shutdown, not even the embedded Redis.
        if not self.shutting_down and (slot.kind == "redis" or self.wanted):
            self.spawn(slot, slot.backoff_why)
        else:
            slot.move("stopped")

    def _check_started(self, slot: WorkerSlot) -> None:
        if slot.kind == "redis":
            if self.redis_ready is not None and self.redis_ready():
                self.mark_ready(slot)
                log.info("embedded Redis is back")
        elif not self.broker_up() and slot.process.uptime() >= STARTSECS:
            self.mark_ready(slot)  # cannot ping without a broker; it did not die

    def next_wakeup(self, now: float, poll_sleep: float) -> float:
        soonest = now + 1.0
        if not any(s.process.pidfd is not None for s in self.all_slots() if s.alive):
            soonest = min(soonest, now + poll_sleep)
        for slot in self.all_slots():
            if slot.state == BACKOFF and slot.backoff_until is not None:
                soonest = min(soonest, slot.backoff_until)
            elif slot.state == FAILED and slot.retry_at is not None:
                soonest = min(soonest, slot.retry_at)
            elif slot.state == STOPPING and slot.stop_deadline is not None:
                soonest = min(soonest, slot.stop_deadline)
            elif slot.state == STARTING and slot.kind == "redis":
                soonest = min(soonest, now + 0.05)
        return soonest

    def _collect_stats(self) -> None:
        limit = self.settings.CELERY_MAX_MEMORY_MB * 1024 * 1024
        for slot in self.all_slots():
            if not slot.alive:
                continue
            slot.stats = slot.process.stats()
            if slot.kind != "worker" or slot.state != RUNNING or slot.stats is None:
                continue
            if slot.stats.memory_bytes > limit:
                self._memory_restart(slot, slot.stats)

    def _memory_restart(self, slot: WorkerSlot, stats: ProcessStats) -> None:
        """Over the memory limit: the job running in its biggest process is failed first
        (the jobs side, told before the death, so it is not re-dispatched into the next
        worker), then a short warm stop and a restart that does not count toward FAILED
        (app.supervisor.worker_slot.restart_for)."""
        limit_mb = self.settings.CELERY_MAX_MEMORY_MB
        used = stats.memory_bytes / 1024 / 1024
        log.warning("%s uses %.0f MB (limit %d MB): failing the job in pid %s, restarting",
                    slot.name, used, limit_mb, stats.biggest_pid)
        slot.last_error = f"restarted for memory: {used:.0f} MB over the {limit_mb} MB limit"
        if self.on_overrun is not None:
            self.on_overrun(slot, stats.biggest_pid, "memory")
        self.restart_for(slot, "memory", stop_timeout=min(self.settings.CELERY_STOP_TIMEOUT,
                                                          MEMORY_STOP_TIMEOUT))

    def _rotate_logs(self) -> None:
        for slot in self.all_slots():
            if slot.proc is not None:
                try:
                    slot.proc.log.rotate_if_needed()
                except OSError as exc:
                    log.warning("could not rotate %s: %s", slot.proc.log.path, exc)

    def save_state(self) -> None:
        records = [slot.process.record() for slot in self.all_slots() if slot.alive]
        try:
            self.state_file.save(records)
        except OSError as exc:
            log.warning("could not write the state file: %s", exc)

    def snapshot(self) -> dict:
        """What the readers see: one immutable dict, swapped whole by the manager."""
        slots = {queue: {"name": s.name, "queue": queue, "state": s.state, "alive": s.alive,
                         "pid": s.pid, "answered": s.answered,
                         "last_life_ok": s.last_life_ok}
                 for queue, s in self.slots.items()}
        return {
            "workers": [slot.describe() for slot in self.slots.values()],
            "slots": slots,
            "queues": list(self.slots) or list(self.weights),
            "redis": self.redis.describe() if self.redis else None,
            "totals": dict(self.totals),
            "wanted": self.wanted,
            "concurrency": self.concurrency,
        }
