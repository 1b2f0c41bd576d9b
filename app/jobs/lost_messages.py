"""Lost broker messages versus purged ones: what the job store does on every broker.

A queued Celery job has *vanished* when, `CELERY_LOST_AFTER` seconds after its publish,
its message is not waiting in the broker and no live worker holds it. What the broker can
tell differs (app/transports.py), so "not waiting" is:
* Redis: not in the queue's lists, nor in kombu's unacked hash (a dead consumer's
  message, which kombu or the manager restores): exact, by message id;
* AMQP: its queue holds no ready message (passive declare), seen twice `lost_after` apart
  (a dead consumer's unacked message is requeued once RabbitMQ closes its connection);
* SQS and other transports that cannot count: no job of that queue runs or started in the
  last `lost_after`, seen twice `lost_after` apart, and the publish is older than the
  visibility timeout (by then an in-flight message of a dead consumer is visible again and
  would have been taken).

What a vanished job becomes (the behaviour operators expect of a purge):
* the broker stayed up since the publish: a message does not leave a live broker's
  queue on its own, so someone removed it (`celery purge`, `redis-cli FLUSHALL`, the
  RabbitMQ or SQS console). The purge is honoured: the job fails with `PURGED_BY_HAND`.
  It is never re-sent, so a purge is never undone (the admin purge API fails its jobs
  itself: `Reconciler.fail_purged`);
* the broker restarted or was unreachable since the publish (Redis: its INFO uptime is
  younger than the publish; any broker: the monitor saw it down): its data was lost, the
  job is re-sent once and marked `RESENT_LOST` in its message;
* it vanishes again after that one re-send: it fails with `LOST_TWICE`.
Jobs of a worker that died are not judged here: the manager's worker-lost hook re-sends
them (reconciler.redispatch_worker_jobs), whatever the broker.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app import transports
from app.broker import queues as broker_queues
from app.jobs.store import Job, JobStore

log = logging.getLogger(__name__)

RESENT_LOST = "re-sent once: its broker message was lost (the broker restarted or was down)"
PURGED_BY_HAND = ("purged: its message was removed from the broker queue while the broker "
                  "stayed up (e.g. `celery purge`); not re-sent")
LOST_TWICE = "lost twice: its broker message vanished again after one re-send"


class QueueView:
    """One look at a queue: which jobs it may still hold."""

    def __init__(self, ids: set[str] | None = None, empty: bool | None = None):
        self.ids = ids        # message ids in the broker (Redis), else None
        self.empty = empty    # nothing waits (AMQP count, SQS idle rule), None: unknown

    def may_hold(self, job: Job) -> bool:
        if self.ids is not None:
            return job.id in self.ids or (job.task_id or "") in self.ids
        return self.empty is not True

    @property
    def exact(self) -> bool:
        return self.ids is not None


class LostMessages:
    """Looks at the broker for the reconciler and decides about vanished jobs."""

    def __init__(self, settings, store: JobStore, celery: Callable[[], object],
                 recovered_at: Callable[[], float | None], lost_after: float):
        self.settings = settings
        self.store = store
        self.celery = celery             # the dispatcher's Celery app (lazily built)
        self.recovered_at = recovered_at
        self.lost_after = lost_after
        self.kind = transports.family(settings.broker_url)
        self._first_seen: dict[str, float] = {}   # job id -> first sighting as vanished

    # --- the broker's side --------------------------------------------------------------
    def view(self, queue: str) -> QueueView:
        """Raises on a broker error (the caller concludes nothing then)."""
        app = self.celery()
        on_broker = self.settings.broker_queue(queue)
        if self.kind == "redis":
            return QueueView(ids=broker_queues.waiting_ids(app, [on_broker])
                             | broker_queues.unacked_ids(app))
        if self.kind == "amqp":
            with app.connection_for_write() as conn:  # type: ignore[attr-defined]
                return QueueView(empty=broker_queues.passive_queue_size(conn, on_broker) == 0)
        # Nothing to count: the queue is taken as empty only while no work flows there (no
        # job of it running or started lately), so a backlog is never mistaken for a loss.
        return QueueView(empty=not self.store.queue_busy(queue, time.time() - self.lost_after))

    def published_before(self, now: float) -> float:
        """Only jobs published before this can have vanished."""
        cutoff = now - self.lost_after
        if self.kind not in ("redis", "amqp"):
            cutoff = min(cutoff, now - self.settings.visibility_timeout)
        return cutoff

    def confirmed(self, vanished: list[Job], now: float, exact: bool) -> list[Job]:
        """The jobs seen vanished long enough: at once where the view is exact (Redis),
        else on a second sighting `lost_after` after the first."""
        ids = {job.id for job in vanished}
        for job_id in set(self._first_seen) - ids:
            del self._first_seen[job_id]
        if exact:
            return vanished
        due = []
        for job in vanished:
            first = self._first_seen.setdefault(job.id, now)
            if now - first >= self.lost_after:
                due.append(job)
        return due

    def broker_started_at(self) -> float | None:
        """The latest time the broker may have (re)started, where it says so (Redis INFO);
        else None. INFO's uptime is a difference of whole seconds, so the start it implies
        may be up to a second early: a restart just after a publish would look older than
        the publish, and its lost messages like a purge."""
        if self.kind != "redis":
            return None
        with self.celery().connection_for_write() as conn:  # type: ignore[attr-defined]
            uptime = conn.default_channel.client.info("server").get("uptime_in_seconds")
        return time.time() - float(uptime) + 1.0 if uptime is not None else None

    # --- the decision ----------------------------------------------------------------
    def decide(self, job: Job, started_at: float | None) -> str:
        """"resend", or the error to fail the job with."""
        self._first_seen.pop(job.id, None)
        if job.message == RESENT_LOST:
            return LOST_TWICE
        published = job.dispatched_at or 0.0
        recovered = self.recovered_at()
        if (started_at is not None and started_at > published) or \
                (recovered is not None and recovered > published):
            return "resend"
        return PURGED_BY_HAND
