"""Reach the one manager of an instance folder from any process.

However many processes serve HTTP (gunicorn workers, a second run.py), exactly one
runs the ``CeleryWorkerManager``: the one holding ``flock`` on ``run/manager.lock``.
The owner also serves the manager's surface as JSON lines on ``run/manager.sock``
(mode 0600, same user only); every other process talks to it through a proxy with
the same methods - the way supervisorctl reaches supervisord.

A handle is in one of three roles:
- ``owner``: holds the lock, runs the manager locally and serves the socket;
- ``proxy``: forwards calls to the owner's socket;
- ``none``: nobody owns the lock; status/health come from a broker check alone and
  the admin verbs raise ``ManagerUnavailable``.
A handle allowed to host the manager (``acquire(..., takeover=True)``) takes the
lock over when the owner dies, so the manager survives its host's death.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.broker import BrokerClient, BrokerMonitor, monitor_for
from app.settings import Settings
from app.supervisor import errors as sup_errors
from app.supervisor.admin_ops import ADMIN_OPS, AdminOp
from app.supervisor.control_socket import ControlSocketServer, read_line, request_line, result_of
from app.supervisor.errors import BrokerUnavailable, ManagerUnavailable, SupervisorError
from app.urls import mask_url

log = logging.getLogger(__name__)

HEALTH_TTL = 0.5          # the public probe reads the owner at most twice a second
CONSUMERS_TTL = 5.0       # without a manager: which queues live workers consume
CONSUMERS_TIMEOUT = 0.5   # that check is a broadcast and always takes this long
# Connecting and publishing it may take seconds on a loaded host (a busy thread holding
# the GIL alone triples it); running out of time means "unknown", which lets jobs go to
# a queue that may have no consumer, so this waits longer than the manager's prober.
CONSUMERS_SLACK = 6.0
CONNECT_TIMEOUT = 2.0


def socket_path(settings: Settings) -> Path:
    """run/manager.sock, or a private short path when that would exceed sun_path."""
    return settings.socket_path("manager.sock")


def lock_path(settings: Settings) -> Path:
    return settings.run_dir / "manager.lock"


class _Cached:
    """A value recomputed at most every `ttl` seconds; stale-while-revalidate.

    Only one caller refreshes at a time; the others get the previous value at once,
    so a slow refresh never stacks up request threads.
    """

    def __init__(self, ttl: float, compute: Callable[[], Any]):
        self.ttl = ttl
        self.compute = compute
        self._value: Any = None
        self._at = 0.0
        self._has = False
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._has and time.monotonic() - self._at < self.ttl:
            return self._value
        if not self._lock.acquire(blocking=not self._has):
            return self._value
        try:
            if not (self._has and time.monotonic() - self._at < self.ttl):
                self._value = self.compute()
                self._at = time.monotonic()
                self._has = True
            return self._value
        finally:
            self._lock.release()

    def clear(self) -> None:
        self._has = False


# --------------------------------------------------------------------------- handle

ManagerFactory = Callable[[Settings], Any]


class ManagerHandle:
    """This process's way to the instance folder's one manager (owner, proxy or none)."""

    # One method per ADMIN_OPS entry is added below the class (_forwarder); declared here
    # are those the app calls by name.
    purge: Callable[..., Any]

    def __init__(self, settings: Settings):
        self.settings = settings
        self.socket_path = socket_path(settings)
        self.lock_path = lock_path(settings)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._manager: Any = None
        self._ready = threading.Event()
        self._state = "idle"  # idle | starting | ready | closing
        self._server: ControlSocketServer | None = None
        self._server_thread: threading.Thread | None = None
        self._factory: ManagerFactory | None = None
        self._on_opened: Callable[[Any], None] | None = None
        self._on_closing: Callable[[], None] | None = None
        self._takeover = False
        self._broker: BrokerMonitor | None = None
        self._started_at = time.time()
        self._health = _Cached(HEALTH_TTL, self._fetch_health)
        self._control: BrokerClient | None = None  # for the no-manager consumer check
        self._consumers = _Cached(CONSUMERS_TTL, self._fetch_consumers)

    # --- role ------------------------------------------------------------
    @property
    def is_owner(self) -> bool:
        return self._lock_fd is not None

    @property
    def manager(self) -> Any:
        """The local manager object (owner only), else None."""
        return self._manager

    def acquire(self, factory: ManagerFactory, *,
                on_opened: Callable[[Any], None] | None = None,
                on_closing: Callable[[], None] | None = None,
                takeover: bool = True) -> bool:
        """Become the owner if nobody is; True when this process now runs the manager.

        With `takeover`, a later call that finds the owner gone retries the lock, so
        this process can take over the manager when its host dies.
        """
        with self._mutex:
            self._factory = factory
            self._on_opened = on_opened or self._on_opened
            self._on_closing = on_closing or self._on_closing
            self._takeover = takeover
            return self._try_become_owner()

    def _try_become_owner(self) -> bool:
        with self._mutex:
            if self.is_owner:
                return True
            if self._factory is None:
                return False
            fd = self._take_lock()
            if fd is None:
                return False
            self._lock_fd = fd
            self._state = "starting"
            manager = None
            try:
                # Serve first: clients that connect while the manager opens wait for it
                # instead of concluding that nobody owns the lock.
                self._serve()
                manager = self._factory(self.settings)
                self._manager = manager  # read-only calls may see it while it opens
                manager.open()
                self._state = "ready"
                self._ready.set()
                _write_owner_pid(fd)
                log.info("this process (pid %d) runs the Celery worker manager", os.getpid())
            except BaseException:
                log.exception("could not start the manager")
                if manager is not None:
                    try:
                        manager.close(timeout=5)
                    except Exception:
                        log.exception("closing the half-started manager failed")
                self._release()
                raise
            if self._on_opened:
                try:
                    self._on_opened(manager)
                except Exception:  # e.g. the job reconciler; the workers still run
                    log.exception("owner start-up hook failed")
            return True

    def _take_lock(self) -> int | None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise
        return fd

    def _serve(self) -> None:
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            path.unlink()  # a dead owner's socket; we hold the lock, so it is stale
        except FileNotFoundError:
            pass
        self._server = ControlSocketServer(path, self.call_local)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="manager-socket", daemon=True)
        self._server_thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Owner: stop the manager (workers warm, then killed) and release the lock."""
        with self._mutex:
            self._close_clients()
            if not self.is_owner:
                return
            self._state = "closing"
            self._ready.clear()
            try:
                if self._on_closing:
                    try:
                        self._on_closing()
                    except Exception:
                        log.exception("owner shutdown hook failed")
                if self._manager is not None:
                    self._manager.close(timeout=timeout)
            finally:
                self._release()

    def _release(self) -> None:
        self._ready.clear()
        self._state = "idle"
        self._manager = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    # --- the manager surface ------------------------------------------------
    # start, stop, restart, tasks, stats and purge are forwarded as they are (methods
    # made from app.supervisor.admin_ops below the class); these three answer even
    # when no manager runs.
    def status(self) -> dict:
        try:
            result = self._call("status")
        except ManagerUnavailable:
            return self._status_without_manager()
        result = dict(result)
        result.setdefault("manager", {"running": True})
        return result

    def health(self) -> dict:
        """The public probe body; never raises, never waits on the broker."""
        if self.is_owner and self._manager is not None:
            try:
                return self.call_local("health")
            except SupervisorError:
                return self._health_without_manager()
        return self._health.get()

    # --- availability path (supervisor branch, issue 13) --------------------------------
    def worker_available(self, queue: str) -> bool:
        """Asked per submission, never cached here: a proxy asks the owner every time (a
        local socket round trip; the owner answers from its snapshot), so a queue's last
        consumer going away reaches dispatch before the next submission."""
        manager = self._manager
        if self.is_owner and manager is not None:
            return bool(manager.worker_available(queue))
        return self._fetch_available(queue)
    # --- end of the availability path ---------------------------------------------------

    # --- plumbing ------------------------------------------------------------
    def call_local(self, op: str, **kwargs) -> Any:
        """Run `op` on this process's manager (the socket server calls this)."""
        manager = self._manager
        if self._state == "starting" and manager is not None and ADMIN_OPS[op].during_boot:
            return getattr(manager, op)(**kwargs)  # cached state; no need to wait for boot
        if self._state == "starting":
            self._ready.wait(timeout=60)
        manager = self._manager
        if self._state != "ready" or manager is None:
            raise ManagerUnavailable(f"the manager is not running here ({self._state})")
        try:
            return getattr(manager, op)(**kwargs)
        except sup_errors.BROKER_ERRORS as exc:
            # A broker outage inside inspect/purge is the caller's 503, not a manager bug.
            raise BrokerUnavailable(f"the broker did not answer: {type(exc).__name__}") from exc

    def _call(self, op: str, **kwargs) -> Any:
        if self.is_owner:
            return self.call_local(op, **kwargs)
        try:
            return self._remote(op, kwargs)
        except _NoOwner:
            pass
        if self._takeover:
            try:
                owner = self._try_become_owner()
            except Exception as exc:
                raise ManagerUnavailable(f"could not take over the manager: {exc}") from exc
            if owner:
                return self.call_local(op, **kwargs)
        raise ManagerUnavailable(
            "no Celery worker manager runs for this instance "
            "(START_CELERY_WORKER is false, or its host process stopped)")

    def _remote(self, op: str, kwargs: dict) -> Any:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise _NoOwner() from exc
            sock.settimeout(ADMIN_OPS[op].reply_timeout(kwargs))
            sock.sendall(request_line(op, kwargs))
            reply = read_line(sock)
        except TimeoutError:
            raise ManagerUnavailable(f"the manager did not answer {op!r} in time") from None
        except _NoOwner:
            raise
        except OSError as exc:
            raise ManagerUnavailable(f"lost the manager connection: {exc.strerror}") from None
        finally:
            sock.close()
        if not reply:
            raise ManagerUnavailable("the manager closed the connection")
        return result_of(reply)

    def _fetch_health(self) -> dict:
        try:
            return self._call("health")
        except SupervisorError:
            return self._health_without_manager()

    def _fetch_available(self, queue: str) -> bool:
        try:
            return bool(self._call("worker_available", queue=queue))
        except SupervisorError:
            # No manager: workers may run elsewhere (celery_worker.py). Publish only to a
            # queue some live worker consumes; "broker up" only when that cannot be asked.
            if not self._broker_up():
                return False
            consumed = self._consumers.get()
            return True if consumed is None else queue in consumed

    def _fetch_consumers(self) -> set[str] | None:
        """Queues any live worker consumes (cached CONSUMERS_TTL); None if unknown."""
        url = self.settings.broker_url
        if not url:
            return None
        if self._control is None:
            self._control = BrokerClient(self.settings, url, name="scm-consumer-check")
        try:
            return set(self._control.consumers(CONSUMERS_TIMEOUT, CONSUMERS_SLACK))
        except SupervisorError as exc:
            log.warning("could not ask the workers which queues they consume (the broker "
                        "decides): %s", exc)
            return None

    def _close_clients(self) -> None:
        control, self._control = self._control, None
        if control is not None:
            control.close()
        broker, self._broker = self._broker, None
        if broker is not None:
            broker.close()
        self._consumers.clear()

    # --- no manager at all -------------------------------------------------
    def _broker_monitor(self) -> BrokerMonitor | None:
        if self._broker is None and self.settings.broker_url:
            self._broker = monitor_for(self.settings.broker_url,
                                       self.settings.CELERY_BROKER_TRANSPORT_OPTIONS)
        return self._broker

    def _broker_up(self) -> bool:
        monitor = self._broker_monitor()
        return bool(monitor and monitor.is_up())

    def _health_without_manager(self) -> dict:
        up = self._broker_up()
        return {
            "healthy": up,
            # Without the broker, submissions still run on this process's thread pool.
            "status": "healthy" if up else "degraded",
            "mode": "celery" if up else "threads",
            "uptime_seconds": round(time.time() - self._started_at, 1),
            "restart_count": 0,
            "workers": {"running": 0, "expected": 0},
        }

    def _status_without_manager(self) -> dict:
        up = self._broker_up()
        return {
            "manager": {"running": False},
            "mode": "celery" if up else "threads",
            "workers": [],
            "broker": {"url": mask_url(self.settings.broker_url), "reachable": up,
                       "embedded": False},
            "queues": dict.fromkeys(self.settings.queue_weights),
        }


def _forwarder(op: AdminOp) -> Callable:
    def forward(self: ManagerHandle, *args, **kwargs) -> Any:
        return self._call(op.name, **op.call_kwargs(*args, **kwargs))
    forward.__name__ = forward.__qualname__ = op.name
    forward.__doc__ = op.summary
    # inspect.signature() honours __signature__ (PEP 362); typeshed's function type
    # does not declare the attribute.
    forward.__signature__ = op.signature(method=True)  # type: ignore[attr-defined]
    return forward


for _op in ADMIN_OPS.values():
    if _op.name not in ManagerHandle.__dict__:
        setattr(ManagerHandle, _op.name, _forwarder(_op))


class _NoOwner(Exception):
    """Nothing listens on the socket: no process owns the manager right now."""


def _write_owner_pid(fd: int) -> None:
    # For operators (`cat run/manager.lock`); the flock, not this number, decides ownership.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
