"""CeleryWorkerManager: one Celery worker per queue (plus the embedded Redis), kept alive.

Threads (DESIGN.md, "Threads"):
- the manager thread owns every child: it forks (through the exec shim),
  signals and reaps, and is the only writer of the slots. It sleeps in
  `select()` on the children's pidfds and a wake-up pipe, so a death is seen
  at once and an idle manager costs nothing;
- the prober thread watches the broker and pings the workers; it only reports
  results to the manager thread;
- the broker-client thread (`CeleryControl`) does every network call to the
  broker, so nobody waits on a hung connection without a deadline;
- the hooks thread runs `on_worker_lost` and the restore of a dead worker's
  unacked messages, so the manager thread never waits on the job store.
API calls from any thread post a command to the manager thread and wait for
its answer (with a deadline). status(), health(), mode and worker_available()
read an immutable snapshot the manager thread publishes after every loop
iteration (and during boot), without any lock: a manager thread busy booting
(stale processes, Redis start) or stopping never makes them wait.

The prober has its own broker client, so admin calls (inspect, purge, queue
depths) on the other one never delay or suppress its pings. Besides pings, it
looks for stuck consumers (celery#8030: alive, answers pings, no longer
consumes after a broker reconnect) and, when the manager runs no local worker
for a queue, whether another live worker consumes it.
"""
from __future__ import annotations

import logging
import os
import queue as queue_module
import selectors
import signal
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Callable

from app.settings import Settings, mask_url
from app.supervisor.broker import BrokerMonitor
from app.supervisor.celery_control import CeleryControl
from app.supervisor.errors import BrokerUnavailable, InvalidRequest, ManagerUnavailable
from app.supervisor.logfile import LogFile
from app.supervisor.logtail import DEFAULT_BYTES as LOG_TAIL_BYTES
from app.supervisor.logtail import worker_log_tail
from app.supervisor.pidfile import StateFile, stop_stale
from app.supervisor.policy import RestartPolicy
from app.supervisor.process import WorkerProcess
from app.supervisor.redis_server import EmbeddedRedis
from app.supervisor.worker_slot import (
    BACKOFF,
    FAILED,
    PROJECT_ROOT,
    REASONS,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    Slot,
    child_env,
    node_name,
    parse_queues,
    split_concurrency,
    worker_argv,
)

log = logging.getLogger(__name__)

QUIT_GRACE = 3.0          # SIGQUIT (cold shutdown) -> SIGKILL of the group
KILL_WAIT = 5.0           # after SIGKILL, how long before we stop waiting for the reap
STARTSECS = 3.0           # alive this long with the broker down counts as RUNNING (unverified)
STARTUP_GRACE = 30.0      # a new worker that never answered is not judged on pings before this
RECOVERY_GRACE = 5.0      # after the broker returns, workers get this long to reconnect
STALL_ROUNDS = 3          # health intervals a worker may sit idle next to a non-empty queue
STALL_STOP_TIMEOUT = 5.0  # a stalled worker has no task: its warm stop is quick
CONSUMERS_TTL = 5.0       # how long the "who else consumes this queue" answer is reused
CONSUMERS_TIMEOUT = 0.5   # that check is a broadcast: it always waits this long
MAX_SLEEP = 1.0           # the loop wakes at least this often (timers, fallback polling)
POLL_SLEEP = 0.2          # without pidfds, children are polled this often
LOG_ROTATE_EVERY = 30.0
REDIS_BOOT_TIMEOUT = 10.0
CALL_TIMEOUT = 15.0       # default wait for the manager thread's answer
TEST_FAIL_EXIT = 3


@dataclass
class _Pending:
    """A command whose answer comes later (a stop that waits for exits)."""
    done: Callable[[], bool]
    result: Callable[[], Any]
    deadline: float
    future: Future | None = None


class CeleryWorkerManager:
    def __init__(self, settings: Settings, *, on_worker_lost: Callable[[str, str], Any] | None = None,
                 worker_app: str = "celery_app"):
        self.settings = settings
        self.on_worker_lost = on_worker_lost
        self.worker_app = worker_app
        self._lock = threading.RLock()
        self._commands: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._prober: threading.Thread | None = None
        self._hooks: _HookThread | None = None
        self._probe_stop = threading.Event()
        self._wake_r = self._wake_w = None
        self._selector: selectors.BaseSelector | None = None
        self._pending: list[_Pending] = []
        self._exit_loop = False
        self._shutting_down = False
        self._closed = False
        self._opened_at: float | None = None
        self._state_file = StateFile(settings.run_dir / "children.json")

        # What to run.
        self._weights = dict(settings.queue_weights)
        self._concurrency = settings.CELERY_CONCURRENCY
        self._wanted = False                      # workers should run (open/start vs stop)
        self._slots: dict[str, Slot] = {}         # queue -> worker slot
        self._restart_totals = {reason: 0 for reason in REASONS}

        # The broker: configured, embedded, or none (threads only).
        self._embedded = EmbeddedRedis(settings) if settings.wants_embedded_redis else None
        self._redis_slot: Slot | None = None
        self._threads_reason: str | None = None
        if self._embedded is not None and not self._embedded.available:
            self._threads_reason = self._embedded.why_unavailable()
            self._broker_url = None
        elif self._embedded is not None:
            self._broker_url = self._embedded.url
        else:
            self._broker_url = settings.broker_url
            if self._broker_url is None:
                self._threads_reason = ("no broker is configured (REDIS_URL, REDIS_HOST or "
                                        "CELERY_BROKER_URL) and EMBEDDED_REDIS is off")
        self._result_backend = settings.result_backend if self._broker_url else None
        self.broker = BrokerMonitor(self._broker_url, timeout=0.5)
        self._control: CeleryControl | None = None        # admin calls, restores
        self._probe_control: CeleryControl | None = None  # the prober's own
        self._control_lock = threading.Lock()
        self.stall_rounds = STALL_ROUNDS
        self._stalls: dict[str, tuple[int, int]] = {}     # worker -> (pid, idle rounds)
        self._next_stall_check = 0.0
        self._uncounted_logged = False
        self._consumers: tuple[float, dict[str, set[str]] | None] | None = None
        self._consumers_lock = threading.Lock()
        self._consumers_refresh = threading.Event()
        self._snap: dict = {}
        self._publish()

        interval = settings.CELERY_HEALTH_CHECK_INTERVAL
        self._ping_interval = interval
        # Worst-case hang detection is interval + fast + misses * timeout: with these
        # fractions two misses fit well inside two intervals.
        self._ping_timeout = min(3.0, max(0.3, interval / 4))
        self._fast_ping = min(interval, max(0.1, interval / 8))
        self._stats_interval = min(5.0, max(1.0, interval))
        self._next_stats = 0.0
        self._next_rotate = 0.0

    # ======================================================================
    # lifecycle (called by the hosting process)
    # ======================================================================
    def open(self) -> "CeleryWorkerManager":
        """Start the manager thread; embedded Redis; the workers when START_CELERY_WORKER."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the manager is already open")
            self.settings.ensure_dirs()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._opened_at = time.monotonic()
            self._hooks = _HookThread()
            self._thread = threading.Thread(target=self._run, name="scm-worker-manager",
                                            daemon=True)
            self._thread.start()
        if self._threads_reason:
            log.warning("Celery workers disabled, jobs run in threads: %s", self._threads_reason)
        self._call(self._boot, timeout=REDIS_BOOT_TIMEOUT + 30)
        self._prober = threading.Thread(target=self._probe_loop, name="scm-worker-prober",
                                        daemon=True)
        self._prober.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers warm within `timeout` (default CELERY_STOP_TIMEOUT), then kill."""
        timeout = self.settings.CELERY_STOP_TIMEOUT if timeout is None else max(0.0, timeout)
        self._probe_stop.set()
        if self._prober is not None:
            self._prober.join(self._ping_timeout + 3)
        thread = self._thread
        if thread is not None and thread.is_alive():
            try:
                self._call(self._begin_shutdown, timeout, timeout=timeout + QUIT_GRACE + KILL_WAIT + 15)
            except ManagerUnavailable:
                log.error("the manager thread did not finish the shutdown in time")
            thread.join(5)
        if thread is not None and thread.is_alive():
            log.error("the manager thread is still running after close()")
            return
        if self._hooks is not None:
            self._hooks.stop(timeout=5)
        for control in (self._control, self._probe_control):
            if control is not None:
                control.close()
        self.broker.close()
        with self._lock:
            self._closed = True
            for fd in (self._wake_r, self._wake_w):
                if fd is not None:
                    os.close(fd)
            self._wake_r = self._wake_w = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    # ======================================================================
    # the surface (any thread)
    # ======================================================================
    def start(self, concurrency: int | None = None, queues=None) -> dict:
        if concurrency is not None and (isinstance(concurrency, bool) or
                                        not isinstance(concurrency, int) or
                                        not 1 <= concurrency <= 64):
            raise InvalidRequest("concurrency must be an integer from 1 to 64")
        try:
            weights = parse_queues(queues) if queues is not None else None
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if self._broker_url is None:
            raise BrokerUnavailable(f"cannot start Celery workers: {self._threads_reason}")
        self._call(self._cmd_start, concurrency, weights)
        return self.status()

    def stop(self, timeout: float = 30) -> dict:
        timeout = _valid_timeout(timeout)
        self._call(self._cmd_stop, timeout, timeout=timeout + QUIT_GRACE + KILL_WAIT + 10)
        return self.status()

    def restart(self, queue: str | None = None) -> dict:
        known = set(self._snap["slots"])
        if queue is not None and queue not in known:
            raise InvalidRequest(f"no worker for queue {queue!r}; workers: {', '.join(sorted(known))}")
        if self._broker_url is None:
            raise BrokerUnavailable(f"cannot restart Celery workers: {self._threads_reason}")
        timeout = self.settings.CELERY_STOP_TIMEOUT
        self._call(self._cmd_restart, queue, timeout=timeout + QUIT_GRACE + KILL_WAIT + 10)
        return self.status()

    def status(self) -> dict:
        snap = self._snap
        now = time.time()
        workers = [_fresh_uptime(w, now) for w in snap["workers"]]
        redis = _fresh_uptime(snap["redis"], now) if snap["redis"] else None
        broker = self.broker.snapshot()
        return {
            "mode": self._mode(snap, broker),
            "workers": workers,
            "broker": {"url": mask_url(self._broker_url), "reachable": broker["reachable"],
                       "since": broker["since"], "last_error": broker["last_error"],
                       "embedded": self._embedded is not None, "process": redis},
            "queues": self._queue_depths(snap["queues"], broker["reachable"]),
            "restarts_by_reason": dict(snap["totals"]),
            "concurrency": snap["concurrency"],
            "manager": {"running": self._thread_alive(), "pid": os.getpid(),
                        "uptime_seconds": self._uptime(),
                        "threads_reason": self._threads_reason},
        }

    def health(self) -> dict:
        """The public probe body, from cached state only (never waits on the broker)."""
        snap = self._snap
        expected = len(snap["slots"]) if snap["wanted"] else 0
        running = sum(1 for s in snap["slots"].values() if s["state"] == RUNNING and s["alive"])
        restarts = sum(snap["totals"].values())
        mode = self._mode(snap, self.broker.snapshot())
        if not self._thread_alive():
            status = "unhealthy"
        elif mode == "celery" and expected and running == expected:
            status = "healthy"
        else:
            status = "degraded"
        return {"healthy": status == "healthy", "status": status, "mode": mode,
                "uptime_seconds": self._uptime(), "restart_count": restarts,
                "workers": {"running": running, "expected": expected}}

    @property
    def mode(self) -> str:
        """celery while the broker answers and a worker runs; threads otherwise."""
        return self._mode(self._snap, self.broker.snapshot())

    def _mode(self, snap: dict, broker: dict) -> str:
        if not self._broker_url or not broker["reachable"]:
            return "threads"
        if any(s["state"] == RUNNING and s["alive"] for s in snap["slots"].values()):
            return "celery"
        return "threads"

    def worker_available(self, queue: str) -> bool:
        """Whether a submission to `queue` will be consumed soon (by our worker or another)."""
        if not self._broker_url or not self.broker.snapshot()["reachable"]:
            return False
        snap = self._snap
        slot = snap["slots"].get(queue)
        if snap["wanted"] and slot is not None:
            if slot["state"] == RUNNING:
                return True
            # A worker being replaced after a crash will consume shortly; one that keeps
            # dying at start will not.
            if slot["state"] in (STARTING, BACKOFF) and slot["last_life_ok"]:
                return True
        # We run no live worker for it: does anyone else (celery_worker.py, another host)?
        consumers = self._remote_consumers(snap)
        if consumers is None:
            return True  # the check cannot run: the broker answers, trust it
        return queue in consumers

    def restart_totals(self) -> dict[str, int]:
        """Cumulative restarts by reason, for metrics."""
        return dict(self._snap["totals"])

    def tasks(self) -> dict:
        names = self._require_broker()
        if not names:
            return {"workers": {}}
        replies = self._control_client().inspect(
            list(names), ("active", "reserved", "scheduled"), timeout=1.0)
        workers = {}
        for name, queue in names.items():
            workers[name] = {"queue": queue,
                             "responded": any(name in replies[m] for m in replies),
                             **{m: replies[m].get(name, []) for m in replies}}
        return {"workers": workers}

    def stats(self) -> dict:
        names = self._require_broker()
        if not names:
            return {"workers": {}}
        replies = self._control_client().inspect(list(names), ("stats",), timeout=1.0)
        return {"workers": {name: replies["stats"].get(name) for name in names}}

    def purge(self, queues=None) -> dict:
        if queues is None:
            targets = list(self._snap["queues"])
        else:
            try:
                targets = list(parse_queues(queues))
            except ValueError as exc:
                raise InvalidRequest(str(exc)) from None
        self._require_broker()
        return {"purged": self._control_client().purge(targets)}

    def log_tail(self, worker, max_bytes=LOG_TAIL_BYTES) -> dict:
        """The end of one of this manager's workers' own log file (app.supervisor.logtail)."""
        return worker_log_tail(self.settings, self.status(), worker, max_bytes)

    # ======================================================================
    # calling the manager thread
    # ======================================================================
    def _call(self, fn: Callable, *args, timeout: float = CALL_TIMEOUT) -> Any:
        if not self._thread_alive():
            raise ManagerUnavailable("the Celery worker manager is not running")
        future: Future = Future()
        self._commands.put((fn, args, future))
        self._wake()
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise ManagerUnavailable(
                f"the worker manager did not answer within {timeout:.0f}s") from None

    def _post(self, fn: Callable, *args) -> None:
        """Hand the manager thread some work without waiting (from the prober)."""
        self._commands.put((fn, args, None))
        self._wake()

    def _wake(self) -> None:
        fd = self._wake_w
        if fd is not None:
            try:
                os.write(fd, b"x")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the thread is awake anyway

    def _thread_alive(self) -> bool:
        return (self._thread is not None and self._thread.is_alive()
                and not self._exit_loop and not self._closed)

    # ======================================================================
    # the manager thread
    # ======================================================================
    def _run(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._exit_loop:
                timeout = max(0.0, self._next_wakeup() - time.monotonic())
                try:
                    self._selector.select(timeout)
                except InterruptedError:
                    pass
                self._drain_wake_pipe()
                try:
                    # No lock: this thread is the only writer; readers use the snapshot.
                    self._run_commands()
                    self._reap_children()
                    self._tick(time.monotonic())
                    self._resolve_pending()
                    self._publish()
                except Exception:
                    # A bug in one step must not end the thread: its exit would SIGKILL
                    # every child through the parent-death signal.
                    log.exception("worker manager loop error")
                    time.sleep(0.1)
        finally:
            self._fail_waiting_commands()
            self._selector.close()

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        soonest = now + MAX_SLEEP
        if not any(s.proc is not None and s.proc.pidfd is not None
                   for s in self._all_slots() if s.alive):
            soonest = min(soonest, now + POLL_SLEEP)
        for slot in self._all_slots():
            if slot.state == BACKOFF and slot.backoff_until is not None:
                soonest = min(soonest, slot.backoff_until)
            elif slot.state == STOPPING and slot.stop_deadline is not None:
                soonest = min(soonest, slot.stop_deadline)
            elif slot.state == STARTING and slot.kind == "redis":
                soonest = min(soonest, now + 0.05)
        for pending in self._pending:
            soonest = min(soonest, pending.deadline)
        return soonest

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _run_commands(self) -> None:
        while True:
            try:
                fn, args, future = self._commands.get_nowait()
            except queue_module.Empty:
                return
            if future is not None and not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except Exception as exc:
                if future is not None:
                    self._publish()
                    future.set_exception(exc)
                else:
                    log.exception("manager command %s failed", getattr(fn, "__name__", fn))
                continue
            if isinstance(result, _Pending):
                result.future = future
                self._pending.append(result)
            elif future is not None:
                self._publish()  # the caller's next status() sees what it asked for
                future.set_result(result)

    def _resolve_pending(self) -> None:
        now = time.monotonic()
        still = []
        for pending in self._pending:
            if pending.done() or now >= pending.deadline:
                if pending.future is not None and not pending.future.done():
                    value = pending.result()
                    self._publish()
                    pending.future.set_result(value)
            else:
                still.append(pending)
        self._pending = still

    def _fail_waiting_commands(self) -> None:
        for pending in self._pending:
            if pending.future is not None and not pending.future.done():
                pending.future.set_result(pending.result())
        while True:
            try:
                _fn, _args, future = self._commands.get_nowait()
            except queue_module.Empty:
                return
            if future is not None and not future.done():
                future.set_exception(ManagerUnavailable("the worker manager stopped"))

    # --- commands (manager thread) ------------------------------------------------------
    def _boot(self) -> None:
        stale = stop_stale(self._state_file.load())
        if stale:
            log.warning("stopped %d stale process(es) of a previous run", len(stale))
        self._state_file.clear()
        if self._embedded is not None and self._embedded.available:
            self._redis_slot = Slot("redis", "redis", None, 0, self._new_policy())
            self._spawn(self._redis_slot, "boot")
            self._publish()
            if self._redis_slot.alive and self._embedded.wait_ready(self._redis_slot.proc,
                                                                    REDIS_BOOT_TIMEOUT):
                self._redis_slot.state = RUNNING
                log.info("embedded Redis runs on %s", self._embedded.socket_path)
            else:
                log.error("embedded Redis did not start: %s",
                          self._embedded.log.tail(10) or "(no output)")
        self._build_slots()
        if self.settings.START_CELERY_WORKER and self._broker_url:
            self._wanted = True
            for slot in self._slots.values():
                self._spawn(slot, "boot")
        self._publish()

    def _cmd_start(self, concurrency: int | None, weights: dict[str, int] | None) -> None:
        if concurrency is not None:
            self._concurrency = concurrency
        if weights is not None:
            self._weights = weights
        self._wanted = True
        sizes = split_concurrency(self._concurrency, self._weights)
        for queue, slot in list(self._slots.items()):
            if queue not in sizes:
                if slot.alive:
                    self._begin_stop(slot, "remove", self.settings.CELERY_STOP_TIMEOUT)
                else:
                    del self._slots[queue]
        for queue, size in sizes.items():
            slot = self._slots.get(queue)
            if slot is None:
                slot = self._slots[queue] = self._new_slot(queue, size)
            resized = slot.pool_size != size
            slot.pool_size = size
            slot.policy.reset()
            if slot.state == STOPPING:
                slot.after_stop = "restart"   # one being removed or stopped is wanted again
                slot.pending_delay = 0.0
            elif slot.alive and resized:
                self._begin_stop(slot, "restart", self.settings.CELERY_STOP_TIMEOUT)
            elif not slot.alive:
                self._spawn(slot, "start")

    def _cmd_stop(self, timeout: float) -> _Pending:
        self._wanted = False
        for slot in self._slots.values():
            if slot.alive:
                if slot.state != STOPPING:
                    self._begin_stop(slot, STOPPED, timeout)
                else:
                    slot.after_stop = STOPPED
            else:
                slot.state = STOPPED
                slot.backoff_until = None
        return _Pending(done=lambda: not any(s.alive for s in self._slots.values()),
                        result=lambda: None,
                        deadline=time.monotonic() + timeout + QUIT_GRACE + KILL_WAIT)

    def _cmd_restart(self, queue: str | None) -> _Pending:
        self._wanted = True
        targets = [self._slots[queue]] if queue else list(self._slots.values())
        for slot in targets:
            slot.policy.reset()
            self._count_restart(slot, "manual")
            if slot.alive:
                if slot.state == STOPPING:
                    slot.after_stop = "restart"
                else:
                    self._begin_stop(slot, "restart", self.settings.CELERY_STOP_TIMEOUT)
                slot.pending_delay = 0.0
            else:
                self._spawn(slot, "manual restart")
        timeout = self.settings.CELERY_STOP_TIMEOUT
        return _Pending(done=lambda: all(s.state != STOPPING for s in targets),
                        result=lambda: None,
                        deadline=time.monotonic() + timeout + QUIT_GRACE + KILL_WAIT)

    def _begin_shutdown(self, timeout: float) -> _Pending:
        self._shutting_down = True
        self._wanted = False
        for slot in self._slots.values():
            if slot.alive:
                self._begin_stop(slot, STOPPED, timeout)
            else:
                slot.state = STOPPED
        deadline = time.monotonic() + timeout + QUIT_GRACE + KILL_WAIT + 10

        def finished() -> bool:
            if any(s.alive for s in self._slots.values()):
                return False
            redis = self._redis_slot
            if redis is not None and redis.alive:
                # Workers first, so none logs a storm of connection errors; Redis gets a
                # SIGTERM to flush its append-only file.
                if redis.state != STOPPING:
                    self._begin_stop(redis, STOPPED, 5.0)
                return False
            self._exit_loop = True
            return True

        def give_up() -> None:
            # Out of time: nothing may outlive the manager, whatever state it is in.
            for slot in self._all_slots():
                if slot.alive:
                    log.error("%s did not stop; killing its process group", slot.name)
                    slot.proc.signal_group(signal.SIGKILL)
            self._exit_loop = True
        return _Pending(done=finished, result=give_up, deadline=deadline)

    # --- children ---------------------------------------------------------------------
    def _all_slots(self) -> list[Slot]:
        slots = list(self._slots.values())
        if self._redis_slot is not None:
            slots.append(self._redis_slot)
        return slots

    def _build_slots(self) -> None:
        sizes = split_concurrency(self._concurrency, self._weights)
        for queue, size in sizes.items():
            self._slots[queue] = self._new_slot(queue, size)

    def _new_slot(self, queue: str, size: int) -> Slot:
        return Slot(node_name(queue), "worker", queue, size, self._new_policy())

    def _new_policy(self) -> RestartPolicy:
        s = self.settings
        return RestartPolicy(s.CELERY_MAX_RESTARTS, s.CELERY_RESTART_WINDOW,
                             s.CELERY_RESTART_DELAY)

    def _make_process(self, slot: Slot) -> WorkerProcess:
        env = child_env(self.settings, broker_url=self._broker_url,
                        result_backend=self._result_backend)
        if slot.kind == "redis":
            return self._embedded.make_process(env, PROJECT_ROOT)
        fail = None
        if self.settings.CELERY_TEST_FAIL_QUEUE == slot.queue:
            fail = (TEST_FAIL_EXIT, f"CELERY_TEST_FAIL_QUEUE={slot.queue}: injected failure "
                                    "at worker start (test-only setting)")
        argv = worker_argv(self.worker_app, slot.queue, slot.pool_size,
                           self.settings.CELERY_LOG_LEVEL)
        log_file = LogFile(self.settings.logs_dir / f"worker-{slot.queue}.log")
        return WorkerProcess(slot.name, argv, env=env, cwd=PROJECT_ROOT, log=log_file,
                             fail_at_start=fail)

    def _spawn(self, slot: Slot, why: str) -> None:
        proc = self._make_process(slot)
        proc.log.write_line(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} supervisor: "
                            f"starting {slot.name} ({why}) ---")
        try:
            proc.spawn()
        except OSError as exc:
            log.error("could not start %s: %s", slot.name, exc)
            slot.proc = None
            slot.last_error = f"could not start: {exc}"
            # Through BACKOFF (the loop's timer spawns again), never straight back into
            # _spawn: with CELERY_RESTART_DELAY=0 that recursed once per attempt.
            self._after_unplanned_exit(slot, reason="crash")
            return
        slot.proc = proc
        slot.state = STARTING
        slot.answered = False
        slot.responsive = False
        slot.ping_misses = 0
        slot.backoff_until = None
        slot.stats = None
        if proc.pidfd is not None:
            self._selector.register(proc.pidfd, selectors.EVENT_READ, slot)
        log.info("started %s (pid %s, %s)", slot.name, proc.pid, why)
        self._save_state()

    def _reap_children(self) -> None:
        for slot in self._all_slots():
            proc = slot.proc
            if proc is None or not proc.alive or not proc.has_exited():
                continue
            if proc.pidfd is not None:
                try:
                    self._selector.unregister(proc.pidfd)
                except (KeyError, ValueError):
                    pass
            exit_info = proc.reap()
            if exit_info is not None:
                self._on_exit(slot, proc, exit_info)

    def _on_exit(self, slot: Slot, proc: WorkerProcess, exit_info) -> None:
        slot.last_exit = exit_info
        slot.responsive = False
        slot.stats = None
        self._save_state()
        log_fn = log.info if exit_info.clean or slot.state == STOPPING else log.warning
        log_fn("%s (pid %s) %s", slot.name, proc.pid, exit_info.describe())
        if slot.kind == "worker" and not exit_info.clean:
            self._worker_lost(slot, proc, exit_info)
        if slot.state == STOPPING:
            after, delay = slot.after_stop, slot.pending_delay
            slot.stop_phase = slot.stop_deadline = None
            if after == "restart" and not self._shutting_down:
                self._schedule_spawn(slot, delay, "restart")
            elif after == "remove":
                self._slots.pop(slot.queue, None)
            elif after == FAILED:
                slot.state = FAILED
            else:
                slot.state = STOPPED
            return
        slot.last_life_ok = slot.answered or slot.state == RUNNING
        slot.last_error = f"{exit_info.describe()}; log tail:\n{proc.log.tail(20)}"
        if self._shutting_down or (slot.kind == "worker" and not self._wanted):
            slot.state = STOPPED
            return
        self._after_unplanned_exit(slot, reason="crash")

    def _after_unplanned_exit(self, slot: Slot, reason: str) -> None:
        decision = slot.policy.on_exit(time.monotonic())
        if decision.gives_up:
            slot.state = FAILED
            slot.backoff_until = None
            slot.last_error = (f"gave up after {decision.restarts_in_window} restarts in "
                               f"{self.settings.CELERY_RESTART_WINDOW:.0f}s; last: "
                               f"{slot.last_error or 'no error recorded'}")
            log.error("%s is FAILED: %s", slot.name, slot.last_error)
            return
        self._count_restart(slot, reason)
        self._schedule_spawn(slot, decision.delay, f"{reason} restart")

    def _schedule_spawn(self, slot: Slot, delay: float, why: str) -> None:
        """Always through BACKOFF: `_tick` (later in the same loop iteration when the delay
        is 0) spawns it. Never calls `_spawn` itself, so a spawn that fails cannot recurse."""
        slot.state = BACKOFF
        slot.backoff_until = time.monotonic() + max(0.0, delay)
        slot.backoff_why = why
        if delay > 0:
            log.info("%s restarts in %.2fs (backoff)", slot.name, delay)

    def _count_restart(self, slot: Slot, reason: str) -> None:
        slot.count_restart(reason)
        if slot.kind == "worker":  # the totals (health, metrics) count Celery workers
            self._restart_totals[reason] = self._restart_totals.get(reason, 0) + 1

    def _worker_lost(self, slot: Slot, proc: WorkerProcess, exit_info) -> None:
        """A worker died holding messages: bring them back now, not after the visibility timeout."""
        started = (proc.started_at or exit_info.time) - 1.0
        died = exit_info.time + 0.5  # the replacement starts after this; its messages are not ours
        control = self._control_client() if self._broker_url else None
        notify = None if self._shutting_down else self.on_worker_lost
        self._hooks.submit(_after_worker_lost, control, self.broker, slot.name, slot.queue,
                           started, died, notify)

    def _begin_stop(self, slot: Slot, after: str, timeout: float, *, kill: bool = False,
                    delay: float = 0.0, reason: str = "stop") -> None:
        slot.after_stop = after
        slot.pending_delay = delay
        slot.stop_reason = reason
        slot.state = STOPPING
        now = time.monotonic()
        if kill:
            slot.proc.signal_group(signal.SIGKILL)
            slot.stop_phase, slot.stop_deadline = "kill", now + KILL_WAIT
            return
        slot.proc.signal(signal.SIGTERM)          # warm shutdown: running tasks finish
        slot.proc.signal_group(signal.SIGCONT)    # a stopped process could not act on it
        slot.stop_phase, slot.stop_deadline = "term", now + timeout

    def _escalate_stop(self, slot: Slot, now: float) -> None:
        if slot.stop_phase == "term":
            log.warning("%s did not stop within the timeout; cold shutdown (SIGQUIT)", slot.name)
            slot.proc.signal(signal.SIGQUIT)
            slot.stop_phase, slot.stop_deadline = "quit", now + QUIT_GRACE
        elif slot.stop_phase == "quit":
            log.warning("%s ignored SIGQUIT; killing its process group", slot.name)
            slot.proc.signal_group(signal.SIGKILL)
            slot.stop_phase, slot.stop_deadline = "kill", now + KILL_WAIT
        else:
            slot.proc.signal_group(signal.SIGKILL)
            slot.stop_deadline = now + KILL_WAIT

    # --- timers -------------------------------------------------------------------------
    def _tick(self, now: float) -> None:
        broker_up = self.broker.snapshot()["reachable"]
        for slot in self._all_slots():
            if slot.state == BACKOFF and slot.backoff_until is not None \
                    and now >= slot.backoff_until:
                # Never during shutdown, not even the embedded Redis.
                if not self._shutting_down and (slot.kind == "redis" or self._wanted):
                    self._spawn(slot, slot.backoff_why)
                else:
                    slot.state = STOPPED
            elif slot.state == STOPPING and slot.stop_deadline is not None \
                    and now >= slot.stop_deadline and slot.alive:
                self._escalate_stop(slot, now)
            elif slot.state == STARTING and slot.alive:
                if slot.kind == "redis":
                    if self._embedded.answers(timeout=0.05):
                        slot.state = RUNNING
                        log.info("embedded Redis is back")
                elif not broker_up and slot.proc.uptime() >= STARTSECS:
                    slot.state = RUNNING  # cannot ping without a broker; it did not die
        if now >= self._next_stats:
            self._next_stats = now + self._stats_interval
            self._collect_stats()
        if now >= self._next_rotate:
            self._next_rotate = now + LOG_ROTATE_EVERY
            for slot in self._all_slots():
                if slot.proc is not None:
                    try:
                        slot.proc.log.rotate_if_needed()
                    except OSError as exc:
                        log.warning("could not rotate %s: %s", slot.proc.log.path, exc)

    def _collect_stats(self) -> None:
        limit = self.settings.CELERY_MAX_MEMORY_MB * 1024 * 1024
        for slot in self._all_slots():
            if not slot.alive:
                continue
            slot.stats = slot.proc.stats()
            if slot.kind != "worker" or slot.state != RUNNING or slot.stats is None:
                continue
            if slot.stats.memory_bytes > limit:
                self._memory_restart(slot)

    def _memory_restart(self, slot: Slot) -> None:
        used = slot.stats.memory_bytes / 1024 / 1024
        log.warning("%s uses %.0f MB (limit %d MB): graceful restart", slot.name, used,
                    self.settings.CELERY_MAX_MEMORY_MB)
        slot.last_error = (f"restarted for memory: {used:.0f} MB over the "
                           f"{self.settings.CELERY_MAX_MEMORY_MB} MB limit")
        decision = slot.policy.on_exit(time.monotonic())
        if decision.gives_up:
            self._begin_stop(slot, FAILED, self.settings.CELERY_STOP_TIMEOUT, reason="memory")
            return
        self._count_restart(slot, "memory")
        self._begin_stop(slot, "restart", self.settings.CELERY_STOP_TIMEOUT,
                         delay=decision.delay, reason="memory")

    # --- ping results (posted by the prober) ------------------------------------------------
    def _on_pings(self, targets: list[tuple[str, int]], answered: set[str], counted: bool) -> None:
        for name, pid in targets:
            slot = next((s for s in self._slots.values() if s.name == name), None)
            if slot is None or slot.pid != pid or slot.state not in (STARTING, RUNNING):
                continue  # a different child by now, or already being handled
            if name in answered:
                slot.responsive = True
                slot.answered = True
                slot.ping_misses = 0
                if slot.state == STARTING:
                    slot.state = RUNNING
                    log.info("%s answers pings", slot.name)
                continue
            slot.responsive = False
            if not counted:
                continue
            if not slot.answered and slot.proc.uptime() < STARTUP_GRACE:
                continue
            slot.ping_misses += 1
            if slot.ping_misses >= self.settings.CELERY_PING_MISSES:
                self._hang_restart(slot)

    def _hang_restart(self, slot: Slot) -> None:
        log.warning("%s (pid %s) missed %d pings while the broker answered: killing it as hung",
                    slot.name, slot.pid, slot.ping_misses)
        slot.last_error = (f"hung: missed {slot.ping_misses} pings while the broker answered; "
                           f"log tail:\n{slot.proc.log.tail(20)}")
        decision = slot.policy.on_exit(time.monotonic())
        # A stopped or wedged process cannot run a warm shutdown: kill the group now.
        if decision.gives_up:
            self._begin_stop(slot, FAILED, 0, kill=True, reason="hang")
        else:
            self._count_restart(slot, "hang")
            self._begin_stop(slot, "restart", 0, kill=True, delay=decision.delay, reason="hang")

    def _on_broker_change(self, up: bool) -> None:
        snapshot = self.broker.snapshot()
        if up:
            log.warning("broker %s reachable again: new jobs go to Celery", snapshot["url"])
        else:
            log.warning("broker %s unreachable (%s): new jobs run in threads; workers are "
                        "not restarted for missed pings", snapshot["url"], snapshot["last_error"])

    def _ping_targets(self) -> list[tuple[str, int]]:
        return [(s["name"], s["pid"]) for s in self._snap["slots"].values()
                if s["alive"] and s["state"] in (STARTING, RUNNING)]

    def _stall_restart(self, name: str, pid: int, depth: int, rounds: int) -> None:
        """(Manager thread) A worker that answers pings but no longer takes work."""
        slot = next((s for s in self._slots.values() if s.name == name), None)
        if slot is None or slot.pid != pid or slot.state != RUNNING:
            return  # a different child by now, or already being handled
        why = (f"stalled: queue {slot.queue} held {depth} message(s) for {rounds} health "
               f"checks while the worker answered pings with no active or reserved task "
               f"(its consumer stopped, e.g. after a broker reconnect)")
        log.warning("%s (pid %s) %s: restarting it", slot.name, pid, why)
        slot.last_error = why
        decision = slot.policy.on_exit(time.monotonic())
        timeout = min(self.settings.CELERY_STOP_TIMEOUT, STALL_STOP_TIMEOUT)
        # Counted as a hang (restarts_by_reason keeps its four reasons); last_error says why.
        if decision.gives_up:
            self._begin_stop(slot, FAILED, timeout, reason="hang")
        else:
            self._count_restart(slot, "hang")
            self._begin_stop(slot, "restart", timeout, delay=decision.delay, reason="hang")

    # ======================================================================
    # the prober thread
    # ======================================================================
    def _probe_loop(self) -> None:
        next_ping = 0.0
        while not self._probe_stop.is_set():
            try:
                next_ping = self._probe_once(next_ping)
            except Exception:
                log.exception("prober error")
                next_ping = time.monotonic() + self._ping_interval
            now = time.monotonic()
            sleep = min(self.broker.ttl, max(0.05, next_ping - now))
            self._probe_stop.wait(sleep)

    def _probe_once(self, next_ping: float) -> float:
        was_up = self.broker.snapshot()["reachable"] if self.broker.known else None
        up = self.broker.is_up()
        if was_up is not None and up != was_up:
            self._post(self._on_broker_change, up)
        if not up:
            self._stalls.clear()  # never judged across an outage
        if up and self._consumers_refresh.is_set():
            self._consumers_refresh.clear()
            self._refresh_consumers()
        now = time.monotonic()
        if not up or now < next_ping or self._probe_client() is None:
            return next_ping if up else now + self.broker.ttl
        targets = self._ping_targets()
        if not targets:
            self._stalls.clear()
            return now + self._ping_interval
        started = time.time()
        try:
            answered = self._probe_control.ping([name for name, _ in targets], self._ping_timeout)
        except BrokerUnavailable as exc:
            self._log_uncounted(f"the ping round failed ({exc})")
            return time.monotonic() + self._fast_ping
        missed = [name for name, _ in targets if name not in answered]
        counted = False
        if missed:
            # A miss counts only if the broker itself answers right now and has been
            # up long enough for workers to reconnect after an outage.
            recovered = self.broker.recovered_at()
            broker_ok = self.broker.check_now()
            in_grace = recovered is not None and recovered > started - RECOVERY_GRACE
            counted = broker_ok and not in_grace
            if not counted:
                self._log_uncounted(
                    f"{', '.join(missed)} missed a ping but "
                    + ("the broker did not answer either" if not broker_ok else
                       f"the broker came back less than {RECOVERY_GRACE:.0f}s ago"))
        if counted or not missed:
            if self._uncounted_logged:
                log.info("worker pings are counted again")
            self._uncounted_logged = False
        self._post(self._on_pings, targets, answered, counted)
        if not missed and time.monotonic() >= self._next_stall_check:
            self._next_stall_check = time.monotonic() + self._ping_interval * 0.9
            try:
                self._check_stalls()
            except BrokerUnavailable as exc:
                log.debug("stuck-consumer check skipped: %s", exc)
        starting = self._any_starting()
        fast = bool(missed) or starting
        return time.monotonic() + (self._fast_ping if fast else self._ping_interval)

    def _log_uncounted(self, why: str) -> None:
        """Once per episode: a ping round that cannot judge anyone is worth one line."""
        if not self._uncounted_logged:
            self._uncounted_logged = True
            log.warning("worker pings not counted: %s", why)

    def _check_stalls(self) -> None:
        """(Prober) One round of the stuck-consumer check: depths, then one inspect.

        A RUNNING worker that has answered pings, whose queue holds messages while it
        reports no active and no reserved task, gets one idle round; `stall_rounds`
        rounds in a row and the manager thread restarts it.
        """
        recovered = self.broker.recovered_at()
        if recovered is not None and recovered > time.time() - RECOVERY_GRACE:
            return  # workers are still reconnecting
        running = {s["name"]: (s["queue"], s["pid"]) for s in self._snap["slots"].values()
                   if s["alive"] and s["state"] == RUNNING and s["answered"]}
        for name in list(self._stalls):
            if name not in running or self._stalls[name][0] != running[name][1]:
                del self._stalls[name]
        if not running:
            return
        queues = sorted({queue for queue, _pid in running.values()})
        depths = self._probe_control.queue_depths(queues, timeout=1.0)
        waiting = {name: depths.get(queue) or 0 for name, (queue, _pid) in running.items()}
        for name, depth in waiting.items():
            if depth <= 0:
                self._stalls.pop(name, None)
        suspects = [name for name, depth in waiting.items() if depth > 0]
        if not suspects:
            return
        replies = self._probe_control.inspect(suspects, ("active", "reserved"),
                                              timeout=self._ping_timeout)
        if not self.broker.check_now():
            return  # an outage, not the worker's fault
        for name in suspects:
            pid = running[name][1]
            active = replies.get("active", {})
            reserved = replies.get("reserved", {})
            if name not in active or name not in reserved:
                continue  # no answer: the pings judge that
            if active[name] or reserved[name]:
                self._stalls.pop(name, None)
                continue
            previous_pid, rounds = self._stalls.get(name, (pid, 0))
            rounds = rounds + 1 if previous_pid == pid else 1
            self._stalls[name] = (pid, rounds)
            if rounds >= self.stall_rounds:
                del self._stalls[name]
                self._post(self._stall_restart, name, pid, waiting[name], rounds)

    def _refresh_consumers(self) -> dict[str, set[str]] | None:
        """Ask every live worker which queues it consumes; cached for CONSUMERS_TTL."""
        with self._consumers_lock:
            cached = self._consumers
            if cached is not None and time.monotonic() - cached[0] < CONSUMERS_TTL / 2:
                return cached[1]  # someone just refreshed it
            control = self._probe_client()
            found = None
            if control is not None:
                try:
                    found = control.consumers(CONSUMERS_TIMEOUT)
                except BrokerUnavailable as exc:
                    log.debug("could not ask the workers for their queues: %s", exc)
            self._consumers = (time.monotonic(), found)
            return found

    def _remote_consumers(self, snap: dict) -> set[str] | None:
        """Queues some live worker other than ours consumes; None when that is unknown."""
        cached = self._consumers
        if cached is None:
            found = self._refresh_consumers()  # first question: answer it now (0.5 s)
        else:
            found = cached[1]
            if time.monotonic() - cached[0] >= CONSUMERS_TTL:
                self._consumers_refresh.set()  # the prober refreshes it; stale until then
        if found is None:
            return None
        ours = {s["name"] for s in snap["slots"].values()}
        return {queue for queue, workers in found.items() if workers - ours}

    def _any_starting(self) -> bool:
        return any(s["state"] == STARTING for s in self._snap["slots"].values())

    # ======================================================================
    # helpers
    # ======================================================================
    def _control_client(self) -> CeleryControl | None:
        """The client for admin calls (inspect, purge, depths) and restores."""
        if self._broker_url is None:
            return None
        with self._control_lock:
            if self._control is None:
                self._control = CeleryControl(self.settings, self._broker_url)
            return self._control

    def _probe_client(self) -> CeleryControl | None:
        """The prober's own client: admin calls never queue in front of its pings."""
        if self._broker_url is None:
            return None
        with self._control_lock:
            if self._probe_control is None:
                self._probe_control = CeleryControl(self.settings, self._broker_url,
                                                    name="scm-broker-prober")
            return self._probe_control

    def _publish(self) -> None:
        """(Manager thread) Publish what the readers see: one immutable dict, swapped whole."""
        slots = {}
        for queue, slot in self._slots.items():
            slots[queue] = {"name": slot.name, "queue": queue, "state": slot.state,
                            "alive": slot.alive, "pid": slot.pid,
                            "answered": slot.answered, "last_life_ok": slot.last_life_ok}
        self._snap = {
            "workers": [slot.describe() for slot in self._slots.values()],
            "slots": slots,
            "queues": list(self._slots) or list(self._weights),
            "redis": self._redis_slot.describe() if self._redis_slot else None,
            "totals": dict(self._restart_totals),
            "wanted": self._wanted,
            "concurrency": self._concurrency,
        }

    def _require_broker(self) -> dict[str, str]:
        """Worker names -> queue, or BrokerUnavailable when the broker is down."""
        if self._broker_url is None:
            raise BrokerUnavailable(f"no broker: {self._threads_reason}")
        if not self.broker.is_up():
            raise BrokerUnavailable(f"the broker {mask_url(self._broker_url)} is unreachable")
        # Only the running ones: asking a stopped worker costs the whole inspect timeout.
        return {s["name"]: s["queue"] for s in self._snap["slots"].values()
                if s["alive"] and s["state"] == RUNNING}

    def _queue_depths(self, queues: list[str], reachable: bool) -> dict[str, int | None]:
        if not reachable or self._broker_url is None:
            return {name: None for name in queues}
        try:
            return self._control_client().queue_depths(queues, timeout=1.0)
        except BrokerUnavailable:
            return {name: None for name in queues}

    def _save_state(self) -> None:
        records = [slot.proc.record() for slot in self._all_slots() if slot.alive]
        try:
            self._state_file.save(records)
        except OSError as exc:
            log.warning("could not write the state file: %s", exc)

    def _uptime(self) -> float:
        if self._opened_at is None:
            return 0.0
        return round(time.monotonic() - self._opened_at, 3)


def _fresh_uptime(described: dict, now: float) -> dict:
    """A snapshot's worker entry with its uptime brought up to now."""
    if described.get("pid") and described.get("started_at"):
        return {**described, "uptime": round(max(0.0, now - described["started_at"]), 3)}
    return described


def _valid_timeout(timeout) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 0 <= timeout <= 600:
        raise InvalidRequest("timeout must be a number of seconds from 0 to 600")
    return float(timeout)


def _after_worker_lost(control: CeleryControl | None, broker: BrokerMonitor, name: str,
                       queue: str, started: float, died: float,
                       notify: Callable[[str, str], Any] | None) -> None:
    """On the hooks thread: restore the dead worker's unacked messages, then tell the jobs side."""
    if control is not None and broker.is_up():
        try:
            control.restore_unacked(queue, delivered_after=started, delivered_before=died)
        except BrokerUnavailable as exc:
            log.warning("could not restore unacked messages of %s: %s", name, exc)
    if notify is not None:
        try:
            notify(name, queue)
        except Exception:
            log.exception("on_worker_lost(%s, %s) failed", name, queue)


class _HookThread:
    """Runs callbacks one at a time, in order, off the manager thread."""

    def __init__(self):
        self._queue: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="scm-worker-hooks", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable, *args) -> None:
        self._queue.put((fn, args))

    def stop(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("hook %s failed", getattr(fn, "__name__", fn))
