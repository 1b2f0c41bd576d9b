"""The composition root: every per-process service of one Flask app, built here.

`Runtime` builds the job services on first use (store, thread fallback, broker monitor,
dispatcher), owns the handle on the instance's one manager and the reconciler seat, and
connects them: the dispatcher asks the handle which queues have workers, the manager's
worker-lost hook and the admin purge go to the reconciler. No package imports this
module; entry points and `create_app()` do.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flask import Flask

from app.broker import monitor_for
from app.cluster import CommandBoard, HostCommandError, HostRegistry
from app.db import engine_for
from app.jobs.dispatch import Dispatcher
from app.jobs.fallback import ThreadFallback
from app.jobs.job_services import JobServices
from app.jobs.limits import memory_overrun
from app.jobs.overrun import fail_overrun_jobs
from app.jobs.store import store_for
from app.runtime.cluster_agent import HOST_OPS, ClusterAgent
from app.runtime.hosting import Hosting
from app.runtime.reconciler_seat import ReconcilerSeat
from app.settings import Settings
from app.supervisor.control import ManagerHandle
from app.supervisor.manager import CeleryWorkerManager

log = logging.getLogger(__name__)
RUNTIME_KEY = "scm.runtime"


class Runtime:
    """This process's services for one app. Building it starts nothing."""

    def __init__(self, settings: Settings, *, worker_app: str = "celery_app"):
        self.settings = settings
        self.worker_app = worker_app
        self.handle = ManagerHandle(settings)
        self.reconciler = ReconcilerSeat(settings, lambda: self.jobs)
        # [deploy] Given to the manager built here: called once per manager-loop iteration
        # on its thread (start_with_celery.py feeds systemd's watchdog with it).
        self.on_tick: Callable[[], None] | None = None
        # [cluster] "worker" on a host without HTTP (start_with_celery.py --no-web).
        self.cluster_role = "web"
        self._agent: ClusterAgent | None = None
        self._jobs: JobServices | None = None
        self._jobs_lock = threading.Lock()

    # --- job services ---------------------------------------------------------------
    @property
    def jobs(self) -> JobServices:
        """The job services, built on first use (nothing starts before then)."""
        with self._jobs_lock:
            if self._jobs is None:
                self._jobs = self._build_jobs()
            return self._jobs

    def _build_jobs(self) -> JobServices:
        settings = self.settings
        store = store_for(settings.database_url)
        fallback = ThreadFallback(settings, store)
        monitor = monitor_for(settings.broker_url, settings.CELERY_BROKER_TRANSPORT_OPTIONS) \
            if settings.broker_url else None
        dispatcher = Dispatcher(settings, store, fallback, broker_monitor=monitor,
                                worker_available=self.handle.worker_available)
        return JobServices(store=store, dispatcher=dispatcher, fallback=fallback,
                           broker_monitor=monitor)

    def close_jobs(self, wait: float | None = None) -> None:
        """Stop the reconciler and tear down the job services (next use rebuilds them)."""
        self.reconciler.stop()
        with self._jobs_lock:
            built, self._jobs = self._jobs, None
        if built is not None:
            built.close(wait=wait)

    # --- hosting ---------------------------------------------------------------------
    def start(self, hosting: Hosting) -> bool:
        """Start this process's share of the instance; True when it hosts the manager."""
        if hosting.manager:
            if self.host_manager(takeover=hosting.takeover):
                return True  # the manager's start-up hook started the reconciler
            log.info("another process runs the manager for %s; using it",
                     self.settings.INSTANCE_PATH)
        if hosting.reconciler and self.reconciler.start() is None:
            log.info("another process runs the jobs reconciler for this instance")
        return False

    def host_manager(self, *, takeover: bool = True) -> bool:
        """Run the manager here if no process of the instance does; True when it now does.

        With `takeover`, this process replaces the owner if it dies. Once the manager is
        open the periodic reconciler starts here too (unless another process runs it);
        the manager's `on_worker_lost` always runs here, where its workers die.
        """
        return self.handle.acquire(self.new_manager, on_opened=self._manager_opened,
                                   on_closing=self._manager_closing, takeover=takeover)

    def new_manager(self, settings: Settings) -> CeleryWorkerManager:
        return CeleryWorkerManager(settings, on_worker_lost=self.on_worker_lost,
                                   worker_app=self.worker_app, on_tick=self.on_tick,
                                   on_memory_overrun=self.on_memory_overrun)

    def _manager_opened(self, _manager) -> None:
        # Journaled thread-mode jobs of a crashed run first, then the periodic sweep.
        if self.reconciler.start() is None:
            log.info("another process runs the jobs reconciler for this instance")
        engine = engine_for(self.settings.database_url)
        self._agent = ClusterAgent(self.settings, HostRegistry(engine), CommandBoard(engine),
                                   role=self.cluster_role, status=self.handle.status,
                                   run_op=self.handle.call_local,
                                   on_host_lost=self.on_host_lost)
        self._agent.start()

    def _manager_closing(self) -> None:
        agent, self._agent = self._agent, None
        if agent is not None:
            agent.stop()
        self.reconciler.stop()

    def on_host_lost(self, node: str) -> list[str] | None:
        """Another host stopped reporting: where the reconciler runs, its jobs come back
        (None: it does not run here)."""
        running = self.reconciler.running
        return running.redispatch_host_jobs(node) if running is not None else None

    # --- the cluster, for /api/celery (any process) ------------------------------------
    def cluster_view(self) -> dict:
        """This host's name, every host of the registry and the reconciler's holder."""
        engine = engine_for(self.settings.database_url)
        return {"node": self.settings.node_name, "hosts": HostRegistry(engine).hosts(),
                "reconciler": self.reconciler.lease_state()}

    def host_command(self, node: str, op: str, kwargs: dict, timeout: float) -> dict:
        """Run start/stop/restart on host `node`'s manager (this one's directly)."""
        if op not in HOST_OPS:
            raise ValueError(f"{op} is not a host command")
        if node == self.settings.node_name:
            return getattr(self.handle, op)(**kwargs)
        engine = engine_for(self.settings.database_url)
        known = {host["node"]: host for host in HostRegistry(engine).hosts()}
        if node not in known:
            raise HostCommandError(404, "unknown_host", f"no host named {node!r}; hosts: "
                                   f"{', '.join(sorted(known)) or 'none'}")
        if not known[node]["alive"]:
            raise HostCommandError(409, "host_lost", f"host {node} stopped reporting "
                                   f"{known[node]['seen_seconds_ago']:.0f}s ago")
        return CommandBoard(engine).send(node, op, kwargs, timeout)

    def on_worker_lost(self, worker_name: str, queue: str | None = None, **details):
        """Re-dispatch the jobs a dead worker held (resolved at call time, so it follows
        the reconciler started - here or elsewhere - after the manager was built)."""
        return self.reconciler.for_this_process().redispatch_worker_jobs(
            worker_name, queue, **details)

    def on_memory_overrun(self, worker_name: str, pid: int | None, limit_mb: int) -> list[str]:
        """A worker went over its memory limit: fail the job that took it there (before
        its death re-dispatches what it held), so no next worker gets it."""
        return fail_overrun_jobs(self.jobs.store, worker_name, pid,
                                 memory_overrun(limit_mb))

    def fail_purged_jobs(self, queues, *, purge_started: float,
                         purge_finished: float) -> dict[str, int]:
        """After a broker purge of `queues`: fail the jobs whose messages it removed, so
        no reconciler publishes them again. Returns {queue: number of jobs failed}."""
        queues = list(queues)
        store = self.jobs.store
        if not any(store.queued_celery(published_before=purge_finished, queue=name)
                   for name in queues):
            return dict.fromkeys(queues, 0)  # nothing to look up in the broker
        return self.reconciler.for_this_process().fail_purged(
            queues, purge_started=purge_started, purge_finished=purge_finished)

    def close(self, wait: float | None = None) -> None:
        """The one stop sequence: the manager (workers warm, then killed) if it runs here,
        then the reconciler, thread pool and Celery client (unfinished thread jobs stay
        journaled for the next boot)."""
        self.handle.close()
        self.close_jobs(wait=wait)


def attach(app: Flask, runtime: Runtime) -> Runtime:
    app.extensions[RUNTIME_KEY] = runtime
    return runtime


def runtime_of(app: Flask) -> Runtime:
    return app.extensions[RUNTIME_KEY]
