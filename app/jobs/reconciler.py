"""Find jobs whose task vanished and send them again, so no job waits forever.

Vanished means one of:
* running, but its heartbeat is stale: the process running it died or froze;
* queued on Celery, published CELERY_LOST_AFTER ago, neither in the broker nor held by
  a live worker: re-sent once if the broker lost it, failed if it was purged by hand
  (app/jobs/lost_messages.py says how the two are told apart, on every broker);
* queued but never handed to anyone (the web process died between record and publish),
  or journaled for a thread pool whose process is gone;
* queued on Celery for a queue that has had no live consumer for CELERY_DRAIN_AFTER
  seconds (its only worker is FAILED or stopped): its messages are taken back from the
  broker and the jobs run in the thread fallback (`drain_unconsumed`).

Why no job can wait forever, case by case
-----------------------------------------
* Its message is in a dead consumer's hands (SIGKILLed worker, prefetched or running):
  the manager restores that worker's unacked messages at once and calls
  `redispatch_worker_jobs`, which breaks the dead holder's lease and re-sends; a
  message that still escapes both is "lost" below after `lost_after`.
* Its message sits in a queue nobody consumes: dispatch already sends new jobs to the
  fallback (the manager answers `worker_available` from the state it publishes in the
  same loop iteration as the death or FAILED, and proxies ask it on every submission);
  what was queued before is drained to the fallback after CELERY_DRAIN_AFTER. A FAILED
  worker is retried after its cool-down, and a consumer that returns gets new jobs again.
* Its message is lost (the broker restarted without its data): re-sent once after
  `lost_after`, failed if lost again; never-published and dead-pool journal entries go
  through `unpublished`.
* The broker is down: dispatch runs new jobs in threads; jobs already published wait
  `outage_grace` (a short outage must not run everything twice), then run in threads.
* The manager is down (its host process died): the lock passes to a process with
  takeover, whose manager starts the workers again; until then `worker_available`
  falls back to asking the broker which queues live workers consume, so dispatch and
  the drain still see "no consumer" and use the fallback.

Why re-dispatching can never make a job run twice to completion
----------------------------------------------------------------
1. Completion is the single transition running -> succeeded (or failed), made by
   `JobStore.succeed/fail` with a compare-and-set on the job's lease token, inside one
   SQLite transaction.
2. A lease token is issued only by `JobStore.claim`, which refuses finished jobs and
   jobs whose holder heartbeated within the lease period; each claim issues a fresh
   token, replacing the previous one.
3. The reconciler only re-sends jobs that are `queued`, or that it first moves from
   `running` back to `queued` with `break_lease` (which clears the token).
So at any instant at most one token is valid per job; a run holding an invalidated
token can no longer heartbeat (it stops at its next progress report) nor complete, and
once a job is finished every later claim (a duplicate message, a restored unacked
message, a re-dispatch that raced with the finish) answers `done`. Duplicated messages
therefore cost at most some repeated work, never a second completion. The output file
is renamed into place atomically, so even two runs racing write one whole PDF.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from app.broker import is_redis_url
from app.broker import queues as broker_queues
from app.jobs.broker_holdings import BrokerHoldings
from app.jobs.cleanup import periodic_cleanup
from app.jobs.dispatch import Dispatcher
from app.jobs.holders import holder_is_dead, node_of, on_this_node
from app.jobs.limits import time_overrun
from app.jobs.lost_messages import RESENT_LOST, LostMessages
from app.jobs.runner import LEASE_SECONDS
from app.jobs.store import Job, JobStore
from app.settings import Settings
from app.transports import has_broadcast

log = logging.getLogger(__name__)

PURGED_ERROR = "purged by an administrator"


class Reconciler:
    """Periodic sweep (owner process only) plus the manager's on-worker-lost hook."""

    def __init__(self, settings: Settings, store: JobStore, dispatcher: Dispatcher, *,
                 interval: float | None = None, stale_after: float = LEASE_SECONDS + 5,
                 lost_after: float | None = None, outage_grace: float = 300.0,
                 inspect_timeout: float = 1.0, cleanup_interval: float = 600.0,
                 child_exit_wait: float = 3.0, drain_after: float | None = None):
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.interval = interval or max(2.0, min(30.0, settings.CELERY_HEALTH_CHECK_INTERVAL))
        self.stale_after = stale_after        # heartbeat age that means "holder gone"
        # A Celery job this long unaccounted for has vanished (lost or purged).
        self.lost_after = settings.CELERY_LOST_AFTER if lost_after is None else lost_after
        self.lost = LostMessages(settings, store, lambda: dispatcher.celery,
                                 self._recovered_at, self.lost_after)
        self.outage_grace = outage_grace      # broker down this long: run it in threads
        self.holdings = BrokerHoldings(settings, dispatcher, inspect_timeout)
        self.cleanup_interval = cleanup_interval
        self.child_exit_wait = child_exit_wait  # for a dead worker's pool children to go
        # A queue without a live consumer this long: its queued jobs go to the fallback.
        self.drain_after = settings.CELERY_DRAIN_AFTER if drain_after is None else drain_after
        self.drain_poll = min(1.0, max(0.1, self.drain_after / 2))
        self._unconsumed_since: dict[str, float] = {}
        self._last_cleanup = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one sweep at a time (tick vs worker-lost hook)
        self._hook_executor: ThreadPoolExecutor | None = None
        self._hook_lock = threading.Lock()

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="job-reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._hook_lock:
            executor, self._hook_executor = self._hook_executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=False)

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.interval
        while not self._stop.wait(min(self.drain_poll, self.interval)):
            try:
                self.drain_unconsumed()
            except Exception:
                log.exception("reconciler drain failed")
            if time.monotonic() < next_tick:
                continue
            next_tick = time.monotonic() + self.interval
            try:
                self.tick()
            except Exception:
                log.exception("reconciler tick failed")

    # --- queues nobody consumes -----------------------------------------------------------
    def drain_unconsumed(self) -> list[str]:
        """Run in the fallback the queued Celery jobs of every queue that has had no live
        consumer for `drain_after` seconds; returns the ids moved. Cheap when nothing
        waits: one store query, and the manager is asked only about queues with jobs."""
        waiting = {job.queue for job in self.store.queued_celery(published_before=time.time())}
        now = time.monotonic()
        for queue in set(self._unconsumed_since) - waiting:
            del self._unconsumed_since[queue]
        due = []
        for queue in sorted(waiting):
            if self.dispatcher.consumed(queue) is not False:  # consumed, or unknown
                self._unconsumed_since.pop(queue, None)
                continue
            since = self._unconsumed_since.setdefault(queue, now)
            if now - since >= self.drain_after:
                due.append(queue)
        return [job_id for queue in due for job_id in self._drain(queue)]

    def _drain(self, queue: str) -> list[str]:
        """Take the queue's waiting messages back from the broker, then re-send the jobs
        (dispatch, seeing no consumer, runs them in threads). A copy the broker still
        holds elsewhere (a dead worker's unacked message) may be delivered later: the
        job's lease decides, so it still completes once (see below)."""
        with self._lock:
            jobs = self.store.queued_celery(published_before=time.time(), queue=queue)
            if not jobs:
                return []
            ids = {job.id for job in jobs} | {job.task_id for job in jobs if job.task_id}
            taken: set[str] = set()
            if is_redis_url(self.settings.broker_url):
                try:
                    taken = broker_queues.take_back(self.dispatcher.celery,
                                                    self.settings.broker_queue(queue), ids)
                except Exception as exc:
                    log.info("reconciler: cannot take messages back from %s (%s)", queue, exc)
            moved = self._resend_all(jobs)
        log.warning("queue %s had no live consumer for %.0fs: %d queued job(s) re-sent "
                    "(%d message(s) taken back from the broker)", queue, self.drain_after,
                    len(moved), len(taken & {job.id for job in jobs}))
        return moved

    # --- the sweep ----------------------------------------------------------------------
    def tick(self) -> dict:
        """One pass; returns the ids re-sent per reason."""
        with self._lock:
            now = time.time()
            report = {
                "stale": self._resend_stale(now - self.stale_after),
                "unpublished": [job.id for job in
                                self.store.unpublished(stale_before=now - self.stale_after)
                                if self._resend(job)],
                "lost": self._sweep_vanished(now),
            }
            released = self.dispatcher.release_held()  # fair use (issue 12)
        if released:
            log.info("released %d held job(s) as their users' earlier jobs finished",
                     len(released))
        if now - self._last_cleanup >= self.cleanup_interval:
            self._last_cleanup = now
            periodic_cleanup(self.settings, self.store, self.dispatcher.celery, now)
        if any(report.values()):
            log.warning("reconciler re-dispatched jobs: %s", report)
        return report

    def _resend(self, job: Job) -> str | None:
        mode = self.dispatcher.submit(job.id)
        if mode == "held":
            return None  # fair use (issue 12): it waits for a slot of its user
        log.info("re-dispatched job %s to %s", job.id, mode)
        return job.id

    def _resend_all(self, jobs: Iterable[Job]) -> list[str]:
        """The ids of those of `jobs` re-sent: a held one (issue 12) is not among them."""
        return [job_id for job in jobs if (job_id := self._resend(job)) is not None]

    def _resend_stale(self, stale_before: float) -> list[str]:
        """Running jobs whose holder stopped heartbeating, or whose process is gone."""
        sent = []
        stale = {job.id: job for job in self.store.stale_running(stale_before)}
        for job in self.store.running_jobs():
            if job.id not in stale and holder_is_dead(job.worker, self.settings.node_name):
                stale[job.id] = job
        for job in stale.values():
            if self._over_time_limit(job):
                # Celery killed it at the hard limit (the soft one did not stop it): a
                # rerun would only be killed again.
                self.store.break_lease(job.id, lease=job.lease,
                                       fail=time_overrun(self.settings.soft_time_limit))
            elif self.store.break_lease(job.id, lease=job.lease,
                                        message="requeued: its runner stopped responding"):
                sent.extend(self._resend_all([job]))
        return sent

    def _over_time_limit(self, job: Job) -> bool:
        ran = (job.heartbeat_at or 0) - (job.started_at or 0)
        return job.mode == "celery" and job.started_at is not None \
            and ran >= self.settings.soft_time_limit

    def _resend_lost(self, published_before: float, queue: str | None = None) -> list[str]:
        """Queued Celery jobs that nothing holds any more."""
        if not self.store.queued_celery(published_before=published_before, queue=queue):
            return []
        snapshot_at = time.time()
        in_broker = self.holdings.contents(queue)
        if in_broker is None:
            if self.holdings.broker_up():
                # Not Redis (AMQP brokers redeliver a dead consumer's messages at once),
                # or the read failed: nothing to conclude this time.
                return []
            # Broker down. Waiting is right for a short outage; after the grace period
            # the job runs in threads (a copy that comes back later finds it done).
            cutoff = min(published_before, snapshot_at - self.outage_grace)
            return self._resend_all(
                self.store.queued_celery(published_before=cutoff, queue=queue))
        # Read the store *after* the broker: a job published before `snapshot_at` was
        # then either in a queue list or already taken by a worker (see mark_published).
        candidates = [job for job in self.store.queued_celery(
            published_before=min(published_before, snapshot_at), queue=queue)
            if job.id not in in_broker and job.task_id not in in_broker]
        if not candidates:
            return []
        held = self.holdings.held_by_workers([job.task_id for job in candidates if job.task_id])
        if held is None:
            return []
        return self._resend_all(job for job in candidates
                                if job.task_id not in held and self._still_queued(job))

    def _sweep_vanished(self, now: float) -> list[str]:
        """Queued Celery jobs whose message vanished: re-sent once when the broker lost
        it, failed when it was purged by hand (app/jobs/lost_messages.py)."""
        cutoff = self.lost.published_before(now)
        queues = sorted({job.queue for job in self.store.queued_celery(published_before=cutoff)})
        if not queues:
            return []
        if not self.holdings.broker_up():
            # Broker down. Waiting is right for a short outage; after the grace period
            # the job runs in threads (a copy that comes back later finds it done).
            return [job_id for job in self.store.queued_celery(
                published_before=min(cutoff, time.time() - self.outage_grace))
                if (job_id := self._resend(job))]
        vanished: list[Job] = []
        started_at = None
        try:
            started_at = self.lost.broker_started_at()
            for queue in queues:
                vanished += self._vanished_in(queue, cutoff)
        except Exception as exc:
            log.info("reconciler: cannot read the broker queues (%s)", exc)
            return []
        sent = []
        for job in self.lost.confirmed(vanished, now, exact=self.lost.kind == "redis"):
            if not self._still_queued(job):
                continue
            verdict = self.lost.decide(job, started_at)
            if verdict == "resend":
                self.store.note_queued(job.id, RESENT_LOST)
                sent.append(self._resend(self.store.get(job.id) or job))
            elif self.store.fail_purged([(job.id, job.task_id)], verdict):
                log.warning("job %s failed: %s", job.id, verdict)
        return [job_id for job_id in sent if job_id]

    def _vanished_in(self, queue: str, cutoff: float) -> list[Job]:
        """Jobs of `queue` published before `cutoff` that neither the broker nor a live
        worker holds. The store is read after the broker (see mark_published)."""
        snapshot_at = time.time()
        view = self.lost.view(queue)
        candidates = [job for job in self.store.queued_celery(
            published_before=min(cutoff, snapshot_at), queue=queue) if not view.may_hold(job)]
        if not candidates:
            return []
        held: set[str] | None = set()
        if has_broadcast(self.settings.broker_url):
            held = self.holdings.held_by_workers([job.task_id for job in candidates if job.task_id])
        if held is None:
            return []
        return [job for job in candidates if job.task_id not in held]

    def _recovered_at(self) -> float | None:
        monitor = self.dispatcher.broker_monitor
        recovered = getattr(monitor, "recovered_at", None)
        return recovered() if callable(recovered) else None

    # --- after an administrator's purge -------------------------------------------------
    def fail_purged(self, queues: Iterable[str], *, purge_started: float,
                    purge_finished: float) -> dict[str, int]:
        """Fail the Celery jobs whose messages a broker purge of `queues` removed.

        Without this the jobs stay queued on Celery, and `_resend_lost` would publish
        them again a minute later: the purge would silently be undone. A job counts as
        purged when it was published before the purge finished, yet its message is not in
        the broker any more and no live worker holds it (a job a worker had already
        taken is running, or is reserved by that worker, and is left alone; one published
        after the purge is in the queue). Returns {queue: jobs failed}.
        """
        queues = list(dict.fromkeys(queues))
        counts = dict.fromkeys(queues, 0)
        with self._lock:
            snapshot_at = time.time()
            in_broker: set[str] | None = set()
            if any(self.store.queued_celery(published_before=purge_finished, queue=name)
                   for name in queues):
                in_broker = self._broker_contents_of(queues)
            if in_broker is None:
                # The queues could not be read after the purge: only jobs published before
                # it started were certainly in the purged lists.
                cutoff = purge_started
                in_broker = set()
            else:
                cutoff = min(purge_finished, snapshot_at)
            candidates = [job for name in queues
                          for job in self.store.queued_celery(published_before=cutoff,
                                                              queue=name)
                          if job.id not in in_broker and job.task_id not in in_broker]
            if not candidates:
                return counts
            held = self.holdings.held_by_workers([job.task_id for job in candidates if job.task_id])
            # Unknown (the inspect failed): the administrator asked for these to go.
            held = held or set()
            failed = self.store.fail_purged(
                [(job.id, job.task_id) for job in candidates if job.task_id not in held],
                PURGED_ERROR)
        for job in candidates:
            if job.id in failed:
                counts[job.queue] = counts.get(job.queue, 0) + 1
        if failed:
            log.warning("purge of %s failed %d queued job(s)", queues, len(failed))
        return counts

    def _broker_contents_of(self, queues: list[str]) -> set[str] | None:
        found: set[str] = set()
        for name in queues:
            ids = self.holdings.contents(name)
            if ids is None:
                return None
            found |= ids
        return found

    def _still_queued(self, job: Job) -> bool:
        current = self.store.get(job.id)
        return current is not None and current.status == "queued" \
            and current.task_id == job.task_id

    # --- the manager's hook -----------------------------------------------------------
    def redispatch_worker_jobs(self, worker_name: str, queue: str | None = None,
                               **_details) -> Future:
        """A worker died: bring back the job it was running and any it had reserved.

        Returns at once (the manager calls this from its monitor thread, which must keep
        restarting workers); the work happens on one long-lived thread shared by every
        worker death (they are serialised by the sweep lock anyway), not a new thread per
        death. The Future's result is the list of re-sent job ids.
        """
        with self._hook_lock:
            if self._hook_executor is None:
                self._hook_executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="job-reconciler-lost")
            executor = self._hook_executor

        def work():
            try:
                return self._redispatch_worker_jobs(worker_name, queue)
            except BaseException:
                log.exception("re-dispatching the jobs of %s failed", worker_name)
                raise

        return executor.submit(work)

    def _redispatch_worker_jobs(self, worker_name: str, queue: str | None) -> list[str]:
        with self._lock:
            sent = []
            # The worker is dead, so its jobs' leases are void although their heartbeats
            # are fresh. Its pool children die with it (prefork sets PDEATHSIG), which
            # can take a moment; a job whose holder still lives was claimed by the
            # replacement (same node name) and is left alone.
            pending = self._jobs_running_on(worker_name)
            deadline = time.monotonic() + self.child_exit_wait
            while pending:
                gone = [job for job in pending
                        if holder_is_dead(job.worker, self.settings.node_name)]
                for job in gone:
                    pending.remove(job)
                    if self.store.break_lease(job.id, lease=job.lease,
                                              message=f"requeued: worker {worker_name} died"):
                        sent.extend(self._resend_all([job]))
                if not pending or time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
            if queue:
                # Jobs it had reserved: published, not in the queue, held by no live worker.
                sent.extend(self._resend_lost(time.time(), queue=queue))
        if sent:
            log.warning("worker %s died: re-dispatched %s", worker_name, sent)
        return sent

    def _jobs_running_on(self, worker_name: str) -> list[Job]:
        if "@" in worker_name:
            return self.store.running_on(worker_name)
        # A bare queue-style name: every node of that name on this host.
        prefix = f"{worker_name}@"
        return [job for job in self.store.running_jobs()
                if (job.worker_node or "").startswith(prefix)
                and on_this_node(job.worker_node, self.settings.node_name)]

    # --- boot ---------------------------------------------------------------------------
    def resume_journal(self) -> list[str]:
        """At boot: re-send thread-mode jobs whose pool died with its process.

        Entries of another live process on this host, or of another host, are left to the
        periodic sweep, which takes them once their heartbeat goes stale.
        """
        sent = []
        with self._lock:
            for job in self.store.journal():
                holder = job.worker if job.status == "running" else job.worker_node
                if holder and not holder_is_dead(holder, self.settings.node_name):
                    continue
                if job.status == "running" and not self.store.break_lease(
                        job.id, lease=job.lease, message="resumed after a restart"):
                    continue
                sent.extend(self._resend_all([job]))
        if sent:
            log.warning("resumed %d journaled job(s) from a previous run: %s", len(sent), sent)
        return sent

    # --- a host of the cluster stopped reporting (app.cluster) ----------------------------
    def redispatch_host_jobs(self, node: str) -> list[str]:
        """Host `node` is lost: the leases of the jobs it ran are void, and what its
        workers had reserved is held by nobody. Sent again now rather than when their
        heartbeats go stale; a run that was only slow cannot complete any more (its lease
        is broken), so this never makes a job finish twice."""
        sent = []
        with self._lock:
            for job in self.store.running_jobs():
                if node_of(job.worker_node) == node and self.store.break_lease(
                        job.id, lease=job.lease, message=f"requeued: host {node} was lost"):
                    sent.append(self._resend(job))
            sent.extend(self._resend_lost(time.time()))
        resent = [job_id for job_id in sent if job_id]
        if resent:
            log.warning("host %s lost: re-dispatched %d job(s)", node, len(resent))
        return resent
