"""CeleryWorkerManager: one Celery worker per queue (plus the embedded Redis), kept alive.

The manager wires the parts and serves the surface; each part has one job:
- `CommandLoop` (loop.py): the manager thread, the only one that forks, signals
  and reaps (DESIGN.md, "Threads"); API calls post commands to it and wait;
- `Fleet` (fleet.py) and `FleetCommands` (commands.py): the slots, their
  children and the operator's commands, run on that thread;
- `WorkerSlot` (worker_slot.py): one program's state machine and its one
  `restart_for(reason)` decision;
- `WorkerPlan` (plan.py): what to run (argv, environment, pool sizes);
- `Prober` (prober.py): pings, stuck consumers, who consumes what; it reports
  events, which the manager posts to the loop;
- the hooks thread (hooks.py): restores a dead worker's unacked messages and
  calls `on_worker_lost`, so the manager thread never waits on the job store.
status(), health(), mode and worker_available() read an immutable snapshot the
manager thread publishes after every loop iteration (and during boot), without
any lock: a manager thread busy booting or stopping never makes them wait.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from app import transports
from app.broker import BrokerClient, BrokerUnavailable, monitor_for
from app.queue_names import parse_queues
from app.settings import Settings
from app.supervisor.broker_choice import REDIS_BOOT_TIMEOUT, BrokerChoice
from app.supervisor.commands import FleetCommands
from app.supervisor.errors import InvalidRequest, ManagerUnavailable
from app.supervisor.fleet import KILL_WAIT, QUIT_GRACE, STALL_STOP_TIMEOUT, Fleet
from app.supervisor.hooks import HookThread, after_worker_lost
from app.supervisor.logtail import DEFAULT_BYTES as LOG_TAIL_BYTES
from app.supervisor.logtail import worker_log_tail
from app.supervisor.loop import CommandLoop
from app.supervisor.pidfile import StateFile
from app.supervisor.plan import WorkerPlan
from app.supervisor.prober import BrokerChanged, PingRound, Prober, Stalled
from app.supervisor.process import WorkerProcess
from app.supervisor.worker_slot import BACKOFF, RUNNING, STARTING, WorkerSlot
from app.urls import mask_url

log = logging.getLogger(__name__)

STARTUP_GRACE = 30.0      # a new worker that never answered is not judged on pings before this
POLL_SLEEP = 0.2          # without pidfds, children are polled this often

ClientFactory = Callable[..., BrokerClient]


class CeleryWorkerManager:
    def __init__(self, settings: Settings, *, on_worker_lost: Callable[[str, str], Any] | None = None,
                 worker_app: str = "celery_app",
                 process_factory: Callable[..., WorkerProcess] = WorkerProcess,
                 client_factory: ClientFactory = BrokerClient,
                 clock: Callable[[], float] = time.monotonic,
                 on_tick: Callable[[], None] | None = None,
                 on_memory_overrun: Callable[[str, int | None, int], Any] | None = None):
        self.settings = settings
        self.on_worker_lost = on_worker_lost
        # (worker name, pid of its biggest process, limit MB): fail the job running there.
        self.on_memory_overrun = on_memory_overrun
        self.worker_app = worker_app
        self.clock = clock
        self._choice = BrokerChoice(settings)
        self._broker_url = self._choice.broker_url
        self.broker = monitor_for(self._broker_url, settings.CELERY_BROKER_TRANSPORT_OPTIONS)
        self._client_factory = client_factory
        self._clients: dict[str, BrokerClient] = {}
        self._clients_lock = threading.Lock()
        self._hooks: HookThread | None = None
        self._opened_at: float | None = None
        self._closed = False
        plan = WorkerPlan(settings, worker_app=worker_app, broker_url=self._broker_url,
                          result_backend=self._choice.result_backend,
                          embedded=self._choice.embedded, process_factory=process_factory)
        self.fleet = Fleet(settings, plan, clock=clock,
                           state_file=StateFile(settings.run_dir / "children.json"),
                           on_lost=self._worker_lost, redis_ready=self._choice.redis_answers,
                           broker_up=lambda: self.broker.snapshot()["reachable"],
                           on_overrun=self._memory_overrun)
        self._loop = CommandLoop(step=self._step, next_wakeup=self._next_wakeup,
                                 publish=self._publish, clock=clock, on_tick=on_tick)
        self._commands = FleetCommands(settings, self.fleet, self._choice,
                                       request_exit=self._request_exit)
        self._prober = Prober(self.broker, lambda: self._client("scm-broker-prober"),
                              snapshot=lambda: self._snap, report=self._report,
                              interval=settings.CELERY_HEALTH_CHECK_INTERVAL,
                              canary_overdue_after=self._canary_overdue_after())
        self._snap: dict = {}
        self._publish()

    # ======================================================================
    # lifecycle (called by the hosting process)
    # ======================================================================
    def open(self) -> CeleryWorkerManager:
        """Start the manager thread; embedded Redis; the workers when START_CELERY_WORKER."""
        self.settings.ensure_dirs()
        self._loop.start()    # raises when already open
        self._opened_at = time.monotonic()
        self._hooks = HookThread()
        self.fleet.selector = self._loop.selector
        if self._choice.threads_reason:
            log.warning("Celery workers disabled, jobs run in threads: %s",
                        self._choice.threads_reason)
        self._loop.call(self._commands.boot, self._publish, timeout=REDIS_BOOT_TIMEOUT + 30)
        self._prober.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers warm within `timeout` (default CELERY_STOP_TIMEOUT), then kill."""
        timeout = self.settings.CELERY_STOP_TIMEOUT if timeout is None else max(0.0, timeout)
        self._prober.stop()
        if self._loop.alive:
            try:
                self._loop.call(self._commands.shutdown, timeout,
                                timeout=timeout + QUIT_GRACE + KILL_WAIT + 15)
            except ManagerUnavailable:
                log.error("the manager thread did not finish the shutdown in time")
        if not self._loop.join(5):
            log.error("the manager thread is still running after close()")
            return
        if self._hooks is not None:
            self._hooks.stop(timeout=5)
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        self._closed = True
        self._loop.close()

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
        weights = _parsed(queues) if queues is not None else None
        if self._broker_url is None:
            raise BrokerUnavailable(f"cannot start Celery workers: {self._choice.threads_reason}")
        self._loop.call(self._commands.start, concurrency, weights)
        return self.status()

    def stop(self, timeout: float = 30) -> dict:
        timeout = _valid_timeout(timeout)
        self._loop.call(self._commands.stop, timeout,
                        timeout=timeout + QUIT_GRACE + KILL_WAIT + 10)
        return self.status()

    def restart(self, queue: str | None = None) -> dict:
        known = set(self._snap["slots"])
        if queue is not None and queue not in known:
            raise InvalidRequest(f"no worker for queue {queue!r}; workers: {', '.join(sorted(known))}")
        if self._broker_url is None:
            raise BrokerUnavailable(f"cannot restart Celery workers: {self._choice.threads_reason}")
        timeout = self.settings.CELERY_STOP_TIMEOUT
        self._loop.call(self._commands.restart, queue,
                        timeout=timeout + QUIT_GRACE + KILL_WAIT + 10)
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
                       "embedded": self._choice.embedded is not None, "process": redis,
                       **self._transport_facts()},
            "queues": self._queue_depths(snap["queues"], broker["reachable"]),
            "restarts_by_reason": dict(snap["totals"]),
            "concurrency": snap["concurrency"],
            "manager": {"running": self._loop.alive, "pid": os.getpid(),
                        "uptime_seconds": self._uptime(),
                        "threads_reason": self._choice.threads_reason},
        }

    def health(self) -> dict:
        """The public probe body, from cached state only (never waits on the broker)."""
        snap = self._snap
        expected = len(snap["slots"]) if snap["wanted"] else 0
        running = sum(1 for s in snap["slots"].values() if s["state"] == RUNNING and s["alive"])
        restarts = sum(snap["totals"].values())
        mode = self._mode(snap, self.broker.snapshot())
        if not self._loop.alive:
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
        """Whether a submission to `queue` will be consumed soon (by our worker or another).

        Read from the snapshot the manager thread publishes in the same loop iteration
        as a death or a FAILED, so no submission after that trusts the old answer."""
        if not self._broker_url or not self.broker.snapshot()["reachable"]:
            return False
        snap = self._snap
        slot = snap["slots"].get(queue)
        if snap["wanted"] and slot is not None:
            if slot["state"] == RUNNING:
                return True
            # A worker being replaced after its child got to RUNNING will consume soon; one
            # that keeps dying at start will not.
            if slot["state"] in (STARTING, BACKOFF) and slot["last_life_ok"]:
                return True
        # We run no live worker for it: does anyone else (celery_worker.py, another host)?
        consumers = self._prober.remote_consumers({s["name"] for s in snap["slots"].values()})
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
        replies = self._admin_client().inspect(
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
        replies = self._admin_client().inspect(list(names), ("stats",), timeout=1.0)
        return {"workers": {name: replies["stats"].get(name) for name in names}}

    def purge(self, queues=None) -> dict:
        targets = list(self._snap["queues"]) if queues is None else list(_parsed(queues))
        self._require_broker()
        return {"purged": self._admin_client().purge(targets)}

    def log_tail(self, worker, max_bytes=LOG_TAIL_BYTES) -> dict:
        """The end of one of this manager's workers' own log file (app.supervisor.logtail)."""
        return worker_log_tail(self.settings, self.status(), worker, max_bytes)

    # ======================================================================
    # the manager thread
    # ======================================================================
    def _step(self, _now: float) -> None:
        self.fleet.reap()
        self.fleet.tick(self.clock())  # after the reap: a zero backoff spawns at once

    def _next_wakeup(self, now: float) -> float:
        return self.fleet.next_wakeup(now, POLL_SLEEP)

    def _request_exit(self) -> None:
        self._loop.exit_requested = True

    def _publish(self) -> None:
        """(Manager thread) Publish what the readers see: one immutable dict, swapped whole."""
        self._snap = self.fleet.snapshot()

    def _report(self, event: object) -> None:
        """(Prober) Hand what it saw to the manager thread."""
        self._loop.post(self._on_probe_event, event)

    def _on_probe_event(self, event: object) -> None:
        if isinstance(event, PingRound):
            self._on_pings(event)
        elif isinstance(event, Stalled):
            self._on_stalled(event)
        elif isinstance(event, BrokerChanged):
            snapshot = self.broker.snapshot()
            if event.up:
                log.warning("broker %s reachable again: new jobs go to Celery", snapshot["url"])
            else:
                log.warning("broker %s unreachable (%s): new jobs run in threads; workers "
                            "are not restarted for missed pings", snapshot["url"],
                            snapshot["last_error"])

    def _on_pings(self, event: PingRound) -> None:
        for name, pid in event.targets:
            slot = self.fleet.slot_named(name)
            if slot is None or slot.pid != pid or slot.state not in (STARTING, RUNNING):
                continue  # a different child by now, or already being handled
            if name in event.pending:
                continue  # a canary still on its way (busy pool): neither answer nor miss
            if name in event.answered:
                slot.responsive = slot.answered = True
                slot.ping_misses = 0
                if slot.state == STARTING:
                    self.fleet.mark_ready(slot)
                    log.info("%s answers pings", slot.name)
                continue
            slot.responsive = False
            if not event.counted or (not slot.answered and slot.process.uptime() < STARTUP_GRACE):
                continue
            slot.ping_misses += 1
            if slot.ping_misses >= self.settings.CELERY_PING_MISSES:
                self._hang_restart(slot)

    def _hang_restart(self, slot: WorkerSlot) -> None:
        log.warning("%s (pid %s) missed %d pings while the broker answered: killing it as hung",
                    slot.name, slot.pid, slot.ping_misses)
        slot.last_error = (f"hung: missed {slot.ping_misses} pings while the broker answered; "
                           f"log tail:\n{slot.process.log.tail(20)}")
        # A stopped or wedged process cannot run a warm shutdown: kill the group now.
        self.fleet.restart_for(slot, "hang", kill=True)

    def _on_stalled(self, event: Stalled) -> None:
        """A worker that answers pings but no longer takes work."""
        slot = self.fleet.slot_named(event.name)
        if slot is None or slot.pid != event.pid or slot.state != RUNNING:
            return  # a different child by now, or already being handled
        why = (f"stalled: queue {slot.queue} held {event.depth} message(s) for {event.rounds} "
               f"health checks while the worker answered pings with no active or reserved "
               f"task (its consumer stopped, e.g. after a broker reconnect)")
        log.warning("%s (pid %s) %s: restarting it", slot.name, event.pid, why)
        slot.last_error = why
        # Counted as a hang (restarts_by_reason keeps its four reasons); last_error says why.
        self.fleet.restart_for(slot, "hang", stop_timeout=min(
            self.settings.CELERY_STOP_TIMEOUT, STALL_STOP_TIMEOUT))

    def _memory_overrun(self, slot: WorkerSlot, pid: int | None, _kind: str) -> None:
        """On the hooks thread, in order before the death that follows: the jobs side
        fails the job that drove the worker over its limit, so it is not re-dispatched."""
        if self.on_memory_overrun is None or self._hooks is None:
            return
        self._hooks.submit(_call_hook, self.on_memory_overrun, slot.name, pid,
                           self.settings.CELERY_MAX_MEMORY_MB)

    def _worker_lost(self, slot: WorkerSlot, proc: WorkerProcess, exit_info) -> None:
        """A worker died holding messages: bring them back now, not after the visibility timeout."""
        started = (proc.started_at or exit_info.time) - 1.0
        died = exit_info.time + 0.5  # the replacement starts after this; its messages are not ours
        client = self._client("scm-broker-client")
        notify = None if self.fleet.shutting_down else self.on_worker_lost
        assert self._hooks is not None, "workers die only on the loop thread open() starts"
        self._hooks.submit(after_worker_lost, client, self.broker, slot.name, slot.queue,
                           started, died, notify)

    # ======================================================================
    # helpers
    # ======================================================================
    def _client(self, name: str) -> BrokerClient | None:
        """A broker client per role: the prober's own, so admin calls (inspect, purge,
        depths) and restores never queue in front of its pings."""
        if self._broker_url is None:
            return None
        with self._clients_lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = self._client_factory(
                    self.settings, self._broker_url, name=name)
            return client

    def _admin_client(self) -> BrokerClient:
        """The client for admin calls (inspect, purge, depths); BrokerUnavailable without
        a broker."""
        client = self._client("scm-broker-client")
        if client is None:
            raise BrokerUnavailable(f"no broker: {self._choice.threads_reason}")
        return client

    def _require_broker(self) -> dict[str, str]:
        """Worker names -> queue, or BrokerUnavailable when the broker is down."""
        if self._broker_url is None:
            raise BrokerUnavailable(f"no broker: {self._choice.threads_reason}")
        if not self.broker.is_up():
            raise BrokerUnavailable(f"the broker {mask_url(self._broker_url)} is unreachable")
        # Only the running ones: asking a stopped worker costs the whole inspect timeout.
        return {s["name"]: s["queue"] for s in self._snap["slots"].values()
                if s["alive"] and s["state"] == RUNNING}

    def _queue_depths(self, queues: list[str], reachable: bool) -> dict[str, int | None]:
        if not reachable or self._broker_url is None:
            return dict.fromkeys(queues)
        try:
            return self._admin_client().queue_depths(queues, timeout=1.0)
        except BrokerUnavailable:
            return dict.fromkeys(queues)

    def _canary_overdue_after(self) -> float | None:
        """None where broadcast pings work; else how long a canary may go unanswered: a
        busy worker answers once a job ends, and Celery ends every job by its hard limit."""
        if self._broker_url is None or transports.has_broadcast(self._broker_url):
            return None
        return self.settings.CELERY_WORKER_TIMEOUT + 2 * self.settings.CELERY_HEALTH_CHECK_INTERVAL

    def _transport_facts(self) -> dict:
        """How this broker is supervised, for status: transport, how responsiveness is
        judged, and why queue depths are null when they are."""
        canary = self._canary_overdue_after() is not None
        facts: dict[str, Any] = {
            "transport": transports.family(self._broker_url),
            "responsiveness": "canary" if canary else "ping",
            "depth_unknown_reason": transports.depth_unknown_reason(self._broker_url),
        }
        if canary:
            client = self._clients.get("scm-broker-prober")
            facts["canary_round_trip_seconds"] = client.canary_round_trips if client else {}
        return facts

    def _uptime(self) -> float:
        if self._opened_at is None:
            return 0.0
        return round(time.monotonic() - self._opened_at, 3)


def _call_hook(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("%s%s failed", getattr(fn, "__name__", fn), args)


def _parsed(queues) -> dict[str, int]:
    try:
        return parse_queues(queues)
    except ValueError as exc:
        raise InvalidRequest(f"queues: {exc}") from None


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
