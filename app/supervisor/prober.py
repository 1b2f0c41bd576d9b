"""The prober thread: broker reachability, worker pings, stuck consumers, who consumes what.

It owns its own broker client, so admin calls (inspect, purge, queue depths) on
the manager's other client never delay or suppress its pings. It decides nothing
about processes: it reports what it saw through `report(event)` (the manager
posts the events to its loop), and reads the workers from `snapshot()`.

Besides pings, it looks for stuck consumers (celery#8030: alive, answers pings,
no longer consumes after a broker reconnect) and keeps the answer to "which
queues does some live worker consume", for queues the manager runs no worker for.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.broker import BrokerClient, BrokerMonitor, BrokerUnavailable
from app.supervisor.worker_slot import RUNNING, STARTING

log = logging.getLogger(__name__)

RECOVERY_GRACE = 5.0      # after the broker returns, workers get this long to reconnect
STALL_ROUNDS = 3          # health intervals a worker may sit idle next to a non-empty queue
CONSUMERS_TTL = 5.0       # how long the "who else consumes this queue" answer is reused
CONSUMERS_TIMEOUT = 0.5   # that check is a broadcast: it always waits this long


@dataclass(frozen=True)
class PingRound:
    targets: list[tuple[str, int]]   # (worker name, pid) asked
    answered: set[str]
    counted: bool                    # misses count (the broker itself answered)
    # Canary mode: asked, not answered yet, not overdue either (neither answer nor miss).
    pending: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Stalled:
    name: str
    pid: int
    depth: int
    rounds: int


@dataclass(frozen=True)
class BrokerChanged:
    up: bool


class Prober:
    def __init__(self, monitor: BrokerMonitor, client: Callable[[], BrokerClient | None], *,
                 snapshot: Callable[[], dict], report: Callable[[object], None],
                 interval: float, stall_rounds: int = STALL_ROUNDS,
                 canary_overdue_after: float | None = None):
        self.monitor = monitor
        # None: broadcast pings. A number: the transport has none (SQS), so canary tasks
        # judge responsiveness, and one unanswered this long is a miss (app/broker/canary.py).
        self.canary_overdue_after = canary_overdue_after
        self.client = client
        self.snapshot = snapshot
        self.report = report
        self.ping_interval = interval
        # Worst-case hang detection is interval + fast + misses * timeout: with these
        # fractions two misses fit well inside two intervals.
        self.ping_timeout = min(3.0, max(0.3, interval / 4))
        self.fast_ping = min(interval, max(0.1, interval / 8))
        self.stall_rounds = stall_rounds
        self._stalls: dict[str, tuple[int, int]] = {}     # worker -> (pid, idle rounds)
        self._next_stall_check = 0.0
        self._uncounted_logged = False
        self._last_up: bool | None = None
        self._consumers: tuple[float, dict[str, set[str]] | None] | None = None
        self._consumers_lock = threading.Lock()
        self._consumers_refresh = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scm-worker-prober",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.ping_timeout + 3)

    def _loop(self) -> None:
        next_ping = 0.0
        while not self._stop.is_set():
            try:
                next_ping = self.probe_once(next_ping)
            except Exception:
                log.exception("prober error")
                next_ping = time.monotonic() + self.ping_interval
            sleep = min(self.monitor.ttl, max(0.05, next_ping - time.monotonic()))
            self._stop.wait(sleep)

    # --- one round ----------------------------------------------------------------------
    def probe_once(self, next_ping: float) -> float:
        up = self.monitor.is_up()
        if self._last_up is not None and up != self._last_up:
            self.report(BrokerChanged(up))
        self._last_up = up
        if not up:
            self._stalls.clear()  # never judged across an outage
        if up and self._consumers_refresh.is_set():
            self._consumers_refresh.clear()
            self.refresh_consumers()
        now = time.monotonic()
        if not up or now < next_ping or self.client() is None:
            return next_ping if up else now + self.monitor.ttl
        targets = [(s["name"], s["pid"]) for s in self.snapshot()["slots"].values()
                   if s["alive"] and s["state"] in (STARTING, RUNNING)]
        if not targets:
            self._stalls.clear()
            return now + self.ping_interval
        missed = self._ping_round(targets)
        if missed is None:
            return time.monotonic() + self.fast_ping
        if not missed and time.monotonic() >= self._next_stall_check:
            self._next_stall_check = time.monotonic() + self.ping_interval * 0.9
            try:
                self._check_stalls()
            except BrokerUnavailable as exc:
                log.debug("stuck-consumer check skipped: %s", exc)
        starting = any(s["state"] == STARTING for s in self.snapshot()["slots"].values())
        fast = bool(missed) or starting
        return time.monotonic() + (self.fast_ping if fast else self.ping_interval)

    def _ping_round(self, targets: list[tuple[str, int]]) -> list[str] | None:
        """Ping `targets` and report the round; the names that missed (None: no round)."""
        started = time.time()
        names = [name for name, _ in targets]
        pending: frozenset[str] = frozenset()
        client = self.client()
        if client is None:
            return None
        try:
            if self.canary_overdue_after is None:
                answered = client.ping(names, self.ping_timeout)
            else:
                canaries = client.canary_round(names, self.ping_timeout,
                                               self.canary_overdue_after)
                answered, pending = canaries.answered, frozenset(canaries.pending)
        except BrokerUnavailable as exc:
            self.log_uncounted(f"the ping round failed ({exc})")
            return None
        missed = [name for name in names if name not in answered and name not in pending]
        counted = False
        if missed:
            # A miss counts only if the broker itself answers right now and has been
            # up long enough for workers to reconnect after an outage.
            recovered = self.monitor.recovered_at()
            broker_ok = self.monitor.check_now()
            in_grace = recovered is not None and recovered > started - RECOVERY_GRACE
            counted = broker_ok and not in_grace
            if not counted:
                self.log_uncounted(
                    f"{', '.join(missed)} missed a ping but "
                    + ("the broker did not answer either" if not broker_ok else
                       f"the broker came back less than {RECOVERY_GRACE:.0f}s ago"))
        if counted or not missed:
            self.counted_again()
        self.report(PingRound(targets, answered, counted, pending))
        return missed

    def log_uncounted(self, why: str) -> None:
        """Once per episode: a ping round that cannot judge anyone is worth one line."""
        if not self._uncounted_logged:
            self._uncounted_logged = True
            log.warning("worker pings not counted: %s", why)

    def counted_again(self) -> None:
        if self._uncounted_logged:
            log.info("worker pings are counted again")
        self._uncounted_logged = False

    # --- stuck consumers ------------------------------------------------------------------
    def _check_stalls(self) -> None:
        """One round of the stuck-consumer check: depths, then one inspect.

        A RUNNING worker that has answered pings, whose queue holds messages while it
        reports no active and no reserved task, gets one idle round; `stall_rounds`
        rounds in a row and it is reported as Stalled.
        """
        recovered = self.monitor.recovered_at()
        if recovered is not None and recovered > time.time() - RECOVERY_GRACE:
            return  # workers are still reconnecting
        running = {s["name"]: (s["queue"], s["pid"]) for s in self.snapshot()["slots"].values()
                   if s["alive"] and s["state"] == RUNNING and s["answered"]}
        for name in list(self._stalls):
            if name not in running or self._stalls[name][0] != running[name][1]:
                del self._stalls[name]
        if not running:
            return
        client = self.client()
        if client is None:
            return
        queues = sorted({queue for queue, _pid in running.values()})
        depths = client.queue_depths(queues, timeout=1.0)
        waiting = {name: depths.get(queue) or 0 for name, (queue, _pid) in running.items()}
        for name, depth in waiting.items():
            if depth <= 0:
                self._stalls.pop(name, None)
        suspects = [name for name, depth in waiting.items() if depth > 0]
        if not suspects:
            return
        replies = client.inspect(suspects, ("active", "reserved"), timeout=self.ping_timeout)
        if not self.monitor.check_now():
            return  # an outage, not the worker's fault
        for name in suspects:
            self._judge_idle(name, running[name][1], waiting[name], replies)

    def _judge_idle(self, name: str, pid: int, depth: int, replies: dict) -> None:
        active = replies.get("active", {})
        reserved = replies.get("reserved", {})
        if name not in active or name not in reserved:
            return  # no answer: the pings judge that
        if active[name] or reserved[name]:
            self._stalls.pop(name, None)
            return
        previous_pid, rounds = self._stalls.get(name, (pid, 0))
        rounds = rounds + 1 if previous_pid == pid else 1
        self._stalls[name] = (pid, rounds)
        if rounds >= self.stall_rounds:
            del self._stalls[name]
            self.report(Stalled(name, pid, depth, rounds))

    # --- who consumes what ------------------------------------------------------------------
    def refresh_consumers(self) -> dict[str, set[str]] | None:
        """Ask every live worker which queues it consumes; cached for CONSUMERS_TTL."""
        if self.canary_overdue_after is not None:
            return None  # no broadcast: nobody can be asked
        with self._consumers_lock:
            cached = self._consumers
            if cached is not None and time.monotonic() - cached[0] < CONSUMERS_TTL / 2:
                return cached[1]  # someone just refreshed it
            client = self.client()
            found = None
            if client is not None:
                try:
                    found = client.consumers(CONSUMERS_TIMEOUT)
                except BrokerUnavailable as exc:
                    log.debug("could not ask the workers for their queues: %s", exc)
            self._consumers = (time.monotonic(), found)
            return found

    def remote_consumers(self, ours: set[str]) -> set[str] | None:
        """Queues some live worker not in `ours` consumes; None when that is unknown."""
        cached = self._consumers
        if cached is None:
            found = self.refresh_consumers()  # first question: answer it now (0.5 s)
        else:
            found = cached[1]
            if time.monotonic() - cached[0] >= CONSUMERS_TTL:
                self._consumers_refresh.set()  # the prober refreshes it; stale until then
        if found is None:
            return None
        return {queue for queue, workers in found.items() if workers - ours}
