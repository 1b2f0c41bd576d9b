"""The manager thread's loop and its command queue.

One long-lived thread sleeps in `select()` on the children's pidfds and a
wake-up pipe, so a death is seen at once and an idle manager costs nothing.
Other threads hand it work with `call` (wait for the answer, with a deadline)
or `post` (fire and forget); a command may answer later by returning a
`Pending`. Each iteration runs the commands, then `step(now)`; `on_tick` is
called once per iteration (a systemd watchdog: a hung loop stops calling it).
"""
from __future__ import annotations

import logging
import os
import queue as queue_module
import selectors
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from app.supervisor.errors import ManagerUnavailable

log = logging.getLogger(__name__)

CALL_TIMEOUT = 15.0       # default wait for the manager thread's answer


@dataclass
class Pending:
    """A command whose answer comes later (a stop that waits for exits)."""
    done: Callable[[], bool]
    result: Callable[[], Any]
    deadline: float
    future: Future | None = None


class CommandLoop:
    def __init__(self, *, step: Callable[[float], None], next_wakeup: Callable[[float], float],
                 publish: Callable[[], None], clock: Callable[[], float],
                 on_tick: Callable[[], None] | None = None, name: str = "scm-worker-manager"):
        self.step = step
        self.next_wakeup = next_wakeup
        self.publish = publish
        self.clock = clock
        self.on_tick = on_tick
        self.name = name
        self.selector: selectors.BaseSelector | None = None
        self.exit_requested = False
        self._commands: queue_module.SimpleQueue = queue_module.SimpleQueue()
        self._pending: list[Pending] = []
        self._thread: threading.Thread | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._closed = False

    # --- lifecycle (the hosting thread) ---------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the manager is already open")
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        selector = self.selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait for the thread to end; True when it did (or never ran)."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def close(self) -> None:
        self._closed = True
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def alive(self) -> bool:
        return (self._thread is not None and self._thread.is_alive()
                and not self.exit_requested and not self._closed)

    # --- handing work to the thread (any thread) -------------------------------------
    def call(self, fn: Callable, *args, timeout: float = CALL_TIMEOUT) -> Any:
        if not self.alive:
            raise ManagerUnavailable("the Celery worker manager is not running")
        future: Future = Future()
        self._commands.put((fn, args, future))
        self.wake()
        try:
            return future.result(timeout)
        except FutureTimeout:
            raise ManagerUnavailable(
                f"the worker manager did not answer within {timeout:.0f}s") from None

    def post(self, fn: Callable, *args) -> None:
        """Hand the manager thread some work without waiting (from the prober)."""
        self._commands.put((fn, args, None))
        self.wake()

    def wake(self) -> None:
        fd = self._wake_w
        if fd is not None:
            try:
                os.write(fd, b"x")
            except (BlockingIOError, OSError):
                pass  # the pipe is full: the thread is awake anyway

    # --- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self.exit_requested:
                self._wait()
                try:
                    # No lock: this thread is the only writer; readers use the snapshot.
                    self._run_commands()
                    self.step(self.clock())
                    self._resolve_pending()
                    self.publish()
                except Exception:
                    # A bug in one step must not end the thread: its exit would SIGKILL
                    # every child through the parent-death signal.
                    log.exception("worker manager loop error")
                    time.sleep(0.1)
                if self.on_tick is not None:
                    self._call_on_tick(self.on_tick)
        finally:
            self._fail_waiting_commands()
            if self.selector is not None:
                self.selector.close()

    def _wait(self) -> None:
        # start() sets both before it starts this thread
        selector, wake_r = self.selector, self._wake_r
        assert selector is not None and wake_r is not None
        soonest = self.next_wakeup(self.clock())
        for pending in self._pending:
            soonest = min(soonest, pending.deadline)
        try:
            selector.select(max(0.0, soonest - self.clock()))
        except InterruptedError:
            pass
        try:
            while os.read(wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    @staticmethod
    def _call_on_tick(on_tick: Callable[[], None]) -> None:
        try:
            on_tick()
        except Exception:
            log.exception("on_tick failed")

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
                if future is None:
                    log.exception("manager command %s failed", getattr(fn, "__name__", fn))
                    continue
                self.publish()
                future.set_exception(exc)
                continue
            if isinstance(result, Pending):
                result.future = future
                self._pending.append(result)
            elif future is not None:
                self.publish()  # the caller's next status() sees what it asked for
                future.set_result(result)

    def _resolve_pending(self) -> None:
        now = self.clock()
        still = []
        for pending in self._pending:
            if pending.done() or now >= pending.deadline:
                if pending.future is not None and not pending.future.done():
                    value = pending.result()
                    self.publish()
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
