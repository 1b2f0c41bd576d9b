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
import json
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path
from typing import Any, Callable

from app.broker import BrokerClient, monitor_for
from app.settings import Settings, mask_url
from app.supervisor import errors as sup_errors
from app.supervisor.errors import BrokerUnavailable, ManagerUnavailable, SupervisorError

log = logging.getLogger(__name__)

# The manager surface served over the socket; nothing else can be called through it.
OPS = ("start", "stop", "restart", "status", "health", "tasks", "stats", "purge",
       "worker_available")
READ_OPS = ("status", "health", "worker_available")
HEALTH_TTL = 0.5          # the public probe reads the owner at most twice a second
CONSUMERS_TTL = 5.0       # without a manager: which queues live workers consume
CONSUMERS_TIMEOUT = 0.5   # that check is a broadcast and always takes this long
CONNECT_TIMEOUT = 2.0
MAX_LINE = 1 << 20
_ERRORS = {cls.__name__: cls for cls in (sup_errors.InvalidRequest,
                                         sup_errors.BrokerUnavailable,
                                         sup_errors.ManagerUnavailable,
                                         sup_errors.SupervisorError)}


def socket_path(settings: Settings) -> Path:
    """run/manager.sock, or a private short path when that would exceed sun_path."""
    return settings.socket_path("manager.sock")


def lock_path(settings: Settings) -> Path:
    return settings.run_dir / "manager.lock"


def _timeout_for(op: str, kwargs: dict) -> float:
    if op == "stop":
        return float(kwargs.get("timeout") or 30) + 60
    if op in ("start", "restart"):
        return 180.0
    if op in ("health", "worker_available"):
        return 2.0  # supervisor branch, issue 13: asked per submission, so fail fast
    return 60.0


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


# --------------------------------------------------------------------------- server

class _Handler(socketserver.StreamRequestHandler):
    """One client connection: JSON request lines in, JSON answer lines out."""

    def handle(self) -> None:
        if not self.server.peer_allowed(self.request):
            return
        for raw in self.rfile:
            if len(raw) > MAX_LINE:
                break
            answer = self.server.dispatch(raw)
            self.wfile.write(json.dumps(answer, default=str).encode() + b"\n")
            self.wfile.flush()


class _SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: Path, handle: "ManagerHandle"):
        self.handle = handle
        self.uid = os.getuid()
        super().__init__(str(path), _Handler)

    def server_bind(self) -> None:
        super().server_bind()
        # The run directory is 0700 already; the socket itself is owner-only too.
        os.chmod(self.server_address, 0o600)

    def peer_allowed(self, conn: socket.socket) -> bool:
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
        except OSError:
            return False
        return uid in (self.uid, 0)

    def dispatch(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
            op, kwargs = request["op"], request.get("kwargs") or {}
            if op not in OPS or not isinstance(kwargs, dict):
                raise SupervisorError(f"unknown operation {op!r}")
            return {"ok": True, "result": self.handle.call_local(op, **kwargs)}
        except SupervisorError as exc:
            return {"ok": False, "error": {"type": type(exc).__name__, "message": exc.message}}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": {"type": "InvalidRequest",
                                           "message": f"bad request: {exc}"}}
        except Exception as exc:  # a manager bug must not kill the server thread
            log.exception("manager operation failed")
            return {"ok": False, "error": {"type": "SupervisorError",
                                           "message": f"manager error: {type(exc).__name__}"}}


# --------------------------------------------------------------------------- handle

ManagerFactory = Callable[[Settings], Any]


class ManagerHandle:
    """This process's way to the instance folder's one manager (owner, proxy or none)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.socket_path = socket_path(settings)
        self.lock_path = lock_path(settings)
        self._mutex = threading.RLock()
        self._lock_fd: int | None = None
        self._manager: Any = None
        self._ready = threading.Event()
        self._state = "idle"  # idle | starting | ready | closing
        self._server: _SocketServer | None = None
        self._server_thread: threading.Thread | None = None
        self._factory: ManagerFactory | None = None
        self._on_opened: Callable[[Any], None] | None = None
        self._on_closing: Callable[[], None] | None = None
        self._takeover = False
        self._broker = None
        self._started_at = time.time()
        self._health = _Cached(HEALTH_TTL, self._fetch_health)
        self._control = None  # BrokerClient for the no-manager consumer check
        self._consumers = _Cached(CONSUMERS_TTL, self._fetch_consumers)

    # --- role ------------------------------------------------------------
    @property
    def is_owner(self) -> bool:
        return self._lock_fd is not None

    @property
    def manager(self) -> Any:
        """The local manager object (owner only), else None."""
        return self._manager

    def acquire(self, factory: ManagerFactory | None = None, *,
                on_opened: Callable[[Any], None] | None = None,
                on_closing: Callable[[], None] | None = None,
                takeover: bool = True) -> bool:
        """Become the owner if nobody is; True when this process now runs the manager.

        With `takeover`, a later call that finds the owner gone retries the lock, so
        this process can take over the manager when its host dies.
        """
        with self._mutex:
            self._factory = factory or self._factory or _default_factory
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
        self._server = _SocketServer(path, self)
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
    def start(self, concurrency: int | None = None, queues: list[str] | None = None) -> dict:
        return self._call("start", concurrency=concurrency, queues=queues)

    def stop(self, timeout: float = 30) -> dict:
        return self._call("stop", timeout=timeout)

    def restart(self, queue: str | None = None) -> dict:
        return self._call("restart", queue=queue)

    def tasks(self) -> dict:
        return self._call("tasks")

    def stats(self) -> dict:
        return self._call("stats")

    def purge(self, queues: list[str]) -> dict:
        return self._call("purge", queues=queues)

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
        if self._state == "starting" and manager is not None and op in READ_OPS:
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
            sock.settimeout(_timeout_for(op, kwargs))
            sock.sendall(json.dumps({"op": op, "kwargs": kwargs}).encode() + b"\n")
            reply = _read_line(sock)
        except (socket.timeout, TimeoutError):
            raise ManagerUnavailable(f"the manager did not answer {op!r} in time") from None
        except _NoOwner:
            raise
        except OSError as exc:
            raise ManagerUnavailable(f"lost the manager connection: {exc.strerror}") from None
        finally:
            sock.close()
        if not reply:
            raise ManagerUnavailable("the manager closed the connection")
        answer = json.loads(reply)
        if answer.get("ok"):
            return answer.get("result")
        error = answer.get("error") or {}
        raise _ERRORS.get(error.get("type"), SupervisorError)(error.get("message", "error"))

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
            return set(self._control.consumers(CONSUMERS_TIMEOUT))
        except SupervisorError as exc:
            log.debug("could not ask the workers for their queues: %s", exc)
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
    def _broker_monitor(self):
        if self._broker is None and self.settings.broker_url:
            self._broker = monitor_for(self.settings.broker_url)
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
            "queues": {name: None for name in self.settings.queue_weights},
        }


class _NoOwner(Exception):
    """Nothing listens on the socket: no process owns the manager right now."""


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n") or size > 64 * MAX_LINE:
            break
    return b"".join(chunks)


def _write_owner_pid(fd: int) -> None:
    # For operators (`cat run/manager.lock`); the flock, not this number, decides ownership.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _default_factory(settings: Settings):
    from app.supervisor.manager import CeleryWorkerManager
    return CeleryWorkerManager(settings)
