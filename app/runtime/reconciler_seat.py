"""Exactly one periodic jobs reconciler across every host and process of a deployment.

The role is a lease in the job store's database (`app.cluster.lease`), held by one
process (`<NODE_NAME>/<pid>-<random>`): it renews the lease every third of CLUSTER_LEASE_SECONDS
and sweeps while it holds it; every other process that may run the reconciler retries
as often, and takes over within one renewal period once the holder's lease expired (its
host died) or was released (an orderly stop). A holder whose renewal fails stops its
sweep at once. A process whose manager sees its workers die must still re-dispatch their
jobs even when another process sweeps: it uses a standby reconciler that never sweeps.
Re-dispatching from two processes is safe: every change is a compare-and-set in the
store (see app.jobs.reconciler), so a sweep that overlaps a takeover by a moment costs
nothing but repeated reads.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable

from app.cluster.lease import RECONCILER, Lease, LeaseState
from app.db import engine_for
from app.jobs.job_services import JobServices
from app.jobs.reconciler import Reconciler
from app.settings import Settings

log = logging.getLogger(__name__)
LeaseFactory = Callable[[Settings], Lease]


def reconciler_lease(settings: Settings) -> Lease:
    # `<node>/<pid>-<random>`: one holder per seat, even two apps in one process.
    return Lease(engine_for(settings.database_url), RECONCILER,
                 f"{settings.node_name}/{os.getpid()}-{secrets.token_hex(3)}",
                 settings.CLUSTER_LEASE_SECONDS)


class ReconcilerSeat:
    def __init__(self, settings: Settings, jobs: Callable[[], JobServices], *,
                 lease_factory: LeaseFactory = reconciler_lease):
        self.settings = settings
        self._jobs = jobs
        self._lease_factory = lease_factory
        self._lease: Lease | None = None
        self._mutex = threading.RLock()
        self._running: Reconciler | None = None
        self._standby: Reconciler | None = None
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    @property
    def running(self) -> Reconciler | None:
        """The periodic reconciler when this process runs it."""
        return self._running

    def start(self) -> Reconciler | None:
        """Stand for the role: take it now if it is free (then resume the thread journal
        and sweep here), and keep trying (or renewing) in the background. Returns the
        reconciler when it runs here now, else None."""
        with self._mutex:
            if self._lease is None:
                self._lease = self._lease_factory(self.settings)
            self._renew_or_take()
            if self._keeper is None:
                self._stop.clear()
                self._keeper = threading.Thread(target=self._keep, name="reconciler-lease",
                                                daemon=True)
                self._keeper.start()
            return self._running

    def stop(self) -> None:
        """Stop sweeping and hand the role over at once (release the lease)."""
        self._stop.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.join(timeout=10)
        with self._mutex:
            running, self._running = self._running, None
            standby, self._standby = self._standby, None
            lease = self._lease
        if running is not None:
            running.stop()
            if lease is not None:
                try:
                    lease.release()
                except Exception as exc:  # the database is gone: the lease just expires
                    log.warning("could not release the reconciler lease: %s", exc)
        if standby is not None:
            standby.stop()

    def for_this_process(self) -> Reconciler:
        """The periodic reconciler when it runs here, else the standby."""
        with self._mutex:
            if self._running is not None:
                return self._running
            if self._standby is None:
                self._standby = self._new()
            return self._standby

    def lease_state(self) -> dict | None:
        """Who holds the role (any host), for status; None when unknown."""
        try:
            # A process that never stood for the role (a gunicorn child) reads it too.
            lease = self._lease or self._lease_factory(self.settings)
            state: LeaseState | None = lease.state()
        except Exception as exc:
            log.info("cannot read the reconciler lease: %s", exc)
            return None
        if state is None:
            return None
        return {"holder": state.holder, "node": state.holder.partition("/")[0],
                "token": state.token, "expires_in": round(state.expires_in, 3),
                "here": self._running is not None}

    # --- the lease ----------------------------------------------------------------------
    def _keep(self) -> None:
        lease = self._lease
        assert lease is not None
        while not self._stop.wait(lease.renew_every):
            with self._mutex:
                if self._stop.is_set():
                    return
                self._renew_or_take()

    def _renew_or_take(self) -> None:
        """(Under the mutex) One renewal or takeover attempt, and its consequence."""
        lease = self._lease
        assert lease is not None
        try:
            token = lease.acquire()
        except Exception as exc:  # the database is unreachable: we cannot know we hold it
            log.warning("reconciler lease: %s", exc)
            token = None
        if token is not None and self._running is None:
            log.info("this process now runs the jobs reconciler (lease token %d)", token)
            reconciler = self._new()
            self._running = reconciler
            reconciler.resume_journal()
            reconciler.start()
        elif token is None and self._running is not None:
            log.warning("the jobs reconciler lease passed to another process: sweep stopped")
            running, self._running = self._running, None
            running.stop()

    def _new(self) -> Reconciler:
        jobs = self._jobs()
        return Reconciler(self.settings, jobs.store, jobs.dispatcher)
