"""systemd's service notification protocol (sd_notify), for `Type=notify` units.

`Notifier.from_environment()` reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID the
way libsystemd does and removes them from os.environ, so the children we start
(gunicorn has its own sd_notify, Celery workers) never talk to systemd on our behalf.
Without NOTIFY_SOCKET every method is a no-op: the same code runs under systemd, in a
container and in a terminal.

Messages are single datagrams to a Unix socket; an address starting with "@" is in the
abstract namespace. A failed send is logged once and never raised: systemd being away
must not take the service down.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, MutableMapping

log = logging.getLogger(__name__)

ENV_NAMES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
# systemd kills the service when no WATCHDOG=1 arrives within WATCHDOG_USEC; pinging at
# half of it leaves room for one late loop iteration (sd_watchdog_enabled(3) advice).
WATCHDOG_FRACTION = 0.5


def socket_address(value: str) -> str | None:
    """The sendto() address for a NOTIFY_SOCKET value; None when it is not a Unix socket."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. vsock:..., which this service never runs under


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between pings systemd asks for, or None when the watchdog is not for us."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None  # set for another process (we were started by it)
    return int(usec) / 1_000_000


class Notifier:
    """Sends READY=1, STATUS=, WATCHDOG=1 and STOPPING=1; a no-op without an address."""

    def __init__(self, address: str | None = None, *, watchdog_seconds: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.address = address
        self.watchdog_seconds = watchdog_seconds if address else None
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_ping: float | None = None
        self.is_ready = False

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None,
                         *, unset: bool = True) -> Notifier:
        environ = os.environ if environ is None else environ
        raw = environ.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%r is not a Unix socket; systemd notifications off", raw)
        interval = watchdog_interval(environ, os.getpid())
        if unset:
            for name in ENV_NAMES:
                environ.pop(name, None)
        return cls(address, watchdog_seconds=interval)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def ping_every(self) -> float | None:
        """How often the watchdog wants WATCHDOG=1, or None when it is off."""
        if self.watchdog_seconds is None:
            return None
        return self.watchdog_seconds * WATCHDOG_FRACTION

    # --- the messages ---------------------------------------------------------------
    def ready(self, status: str | None = None) -> None:
        self.is_ready = True
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the reload.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def watchdog(self) -> None:
        self._last_ping = self._clock()
        self.send("WATCHDOG=1")

    def watchdog_tick(self) -> None:
        """Called from a loop that must stay alive: WATCHDOG=1 when half the interval passed.

        Pass it as the manager's `on_tick`: if that loop hangs, the pings stop and systemd
        restarts the unit.
        """
        every = self.ping_every
        if every is None:
            return
        if self._last_ping is None or self._clock() - self._last_ping >= every:
            self.watchdog()

    # --- transport ---------------------------------------------------------------
    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        payload = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.sendto(payload, self.address)
                return True
            except OSError as exc:
                if not self._failed:
                    log.warning("sd_notify to %r failed: %s", self.address, exc)
                    self._failed = True
                return False

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def health_status(health: dict) -> str:
    """A STATUS= line from the public health body: mode, state and worker counts."""
    workers = health.get("workers", {})
    return (f"mode={health.get('mode')} status={health.get('status')} "
            f"workers={workers.get('running', 0)}/{workers.get('expected', 0)} "
            f"restarts={health.get('restart_count', 0)}")


class ReadinessReporter:
    """Decides when the service is ready and keeps STATUS= current; `poll()` it often.

    Ready means every expected worker runs (the caller checked that HTTP serves). A
    broker that is down at boot would keep the workers from ever running: after `grace`
    seconds READY=1 is sent anyway with the degraded state in STATUS=, because the
    service does work (jobs run on threads) and systemd killing it at TimeoutStartSec
    would only make that worse.
    """

    def __init__(self, notifier: Notifier, health: Callable[[], dict], *, grace: float = 90.0,
                 clock: Callable[[], float] = time.monotonic):
        self.notifier = notifier
        self.health = health
        self.grace = grace
        self._clock = clock
        self._started = clock()
        self._last_status: str | None = None

    def poll(self) -> None:
        if not self.notifier.enabled:
            return
        health = self.health()
        line = health_status(health)
        if self.notifier.is_ready:
            self._report(line)
            return
        if self._ready(health):
            self.notifier.ready(line)
        elif self._clock() - self._started >= self.grace:
            log.warning("not all workers run after %.0f s; reporting ready (%s)",
                        self.grace, line)
            self.notifier.ready(f"degraded: {line}")
        else:
            self._report(line, prefix="starting: ")
            return
        self._last_status = line

    def _report(self, line: str, prefix: str = "") -> None:
        if line != self._last_status:
            self.notifier.status(prefix + line)
            self._last_status = line

    def _ready(self, health: dict) -> bool:
        workers = health.get("workers", {})
        return workers.get("running", 0) >= workers.get("expected", 0)


class ServiceNotifier:
    """The lifecycle notifier an entry point hands to `serve(...)`: ready(status),
    status(text), stopping(), backed by systemd's protocol.

    `serve` calls ready() once HTTP serves and the manager has started; READY=1 also
    waits for every expected worker to run, so a thread polls `health()` until then
    (serve already checked HTTP).
    """

    def __init__(self, notifier: Notifier, health: Callable[[], dict], *, grace: float = 90.0,
                 interval: float = 0.25):
        self.notifier = notifier
        self._reporter = ReadinessReporter(notifier, health, grace=grace)
        self._interval = interval
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def ready(self, status: str = "") -> None:
        if not self.notifier.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._until_ready, name="sd-notify-ready",
                                        daemon=True)
        self._thread.start()

    def _until_ready(self) -> None:
        while not self._done.is_set() and not self.notifier.is_ready:
            try:
                self._reporter.poll()
            except Exception:  # the health read must never end the service
                log.exception("readiness check failed")
            self._done.wait(self._interval)

    def status(self, text: str) -> None:
        if self.notifier.is_ready:  # before READY the readiness thread reports
            self.notifier.status(text)

    def stopping(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(2)
        self.notifier.stopping()

    def watchdog_tick(self) -> None:
        self.notifier.watchdog_tick()


class NullNotifier(Notifier):
    """The default for entry points not under systemd: every method is a no-op."""

    def __init__(self) -> None:
        super().__init__(None)
