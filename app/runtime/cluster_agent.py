"""This host's part in the cluster, run by the process that hosts its manager.

Two daemon threads:
- heartbeat: every CELERY_HEALTH_CHECK_INTERVAL, this host's row in the host registry
  (role, pid, mode, workers); and, where this process holds the reconciler lease, the
  jobs of a host that went lost are brought back at once instead of after their leases
  go stale (`Reconciler.redispatch_host_jobs`);
- commands: about twice a second, the admin commands other hosts left for this one
  (start, stop, restart), run on this host's manager, answer written back.
An orderly stop removes the row, so only a host that died shows as `lost`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from app.cluster import CommandBoard, HostCommandError, HostRegistry
from app.settings import Settings
from app.supervisor.errors import SupervisorError

log = logging.getLogger(__name__)

COMMAND_POLL_S = 0.5
HOST_OPS = ("start", "stop", "restart")   # what another host may ask this one to do
WORKER_KEYS = ("name", "queue", "state", "pid", "restarts", "memory_bytes", "rss_bytes",
               "responsive", "uptime", "last_error")

Status = Callable[[], dict]
RunOp = Callable[..., Any]
OnHostLost = Callable[[str], Any]


def host_snapshot(status: dict, now: float) -> dict:
    """What a heartbeat carries: the mode and each worker's essentials, seen `now`."""
    workers = [{**{key: worker.get(key) for key in WORKER_KEYS}, "last_seen": now}
               for worker in status.get("workers") or []]
    return {"mode": status.get("mode"), "workers": workers}


class ClusterAgent:
    def __init__(self, settings: Settings, registry: HostRegistry, board: CommandBoard, *,
                 role: str, status: Status, run_op: RunOp,
                 on_host_lost: OnHostLost | None = None):
        self.settings = settings
        self.node = settings.node_name
        self.registry, self.board = registry, board
        self.role = role
        self._status, self._run_op, self._on_host_lost = status, run_op, on_host_lost
        self.interval = settings.CELERY_HEALTH_CHECK_INTERVAL
        self.started_at = time.time()
        self._lost: set[str] = set()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.beat()  # listed at once, not one interval later
        for name, target in (("cluster-heartbeat", self._heartbeats),
                             ("cluster-commands", self._commands)):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        try:
            self.registry.remove(self.node)
        except Exception as exc:
            log.warning("could not leave the host registry: %s", exc)

    # --- heartbeat ----------------------------------------------------------------------
    def beat(self) -> None:
        try:
            snapshot = host_snapshot(self._status(), time.time())
            self.registry.publish(self.node, role=self.role, pid=os.getpid(),
                                  interval=self.interval, started_at=self.started_at,
                                  snapshot=snapshot)
        except Exception as exc:  # the database blinked: the next beat tries again
            log.warning("host heartbeat failed: %s", exc)

    def _heartbeats(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
            self.bring_back_lost_hosts()

    def bring_back_lost_hosts(self) -> list[str]:
        """Hand each lost host's node name to `on_host_lost` until it took it (once per
        loss): it answers None where this process does not hold the reconciler lease,
        and the host that takes the lease over a moment later must still do it."""
        if self._on_host_lost is None:
            return []
        try:
            hosts = self.registry.hosts()
        except Exception as exc:
            log.info("cannot read the host registry: %s", exc)
            return []
        lost = {h["node"] for h in hosts if not h["alive"] and h["node"] != self.node}
        self._lost &= lost   # a host that came back may be lost again later
        handled = []
        for node in sorted(lost - self._lost):
            try:
                if self._on_host_lost(node) is None:
                    continue
            except Exception:
                log.exception("bringing back the jobs of host %s failed", node)
            log.warning("host %s stopped reporting: its jobs were brought back", node)
            self._lost.add(node)
            handled.append(node)
        return handled

    # --- commands from other hosts ------------------------------------------------------
    def _commands(self) -> None:
        while not self._stop.wait(COMMAND_POLL_S):
            try:
                commands = self.board.take(self.node)
            except Exception as exc:
                log.info("cannot read host commands: %s", exc)
                continue
            for command in commands:
                self._run(command.id, command.op, command.args)

    def _run(self, command_id: int, op: str, args: dict) -> None:
        error: HostCommandError | None = None
        result = None
        if op not in HOST_OPS:
            error = HostCommandError(400, "invalid_request", f"{op} is not a host command")
        else:
            try:
                result = self._run_op(op, **args)
            except SupervisorError as exc:
                error = HostCommandError(exc.http_status, exc.code, exc.message)
            except Exception as exc:
                log.exception("host command %s failed", op)
                error = HostCommandError(500, "internal_error", f"{type(exc).__name__}: {exc}")
        try:
            self.board.finish(command_id, result=result, error=error)
        except Exception as exc:
            log.warning("could not answer host command %d: %s", command_id, exc)
