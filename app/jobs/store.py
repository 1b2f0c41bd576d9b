"""Job records in the `jobs` table of the store (`DATABASE_URL`: SQLite or PostgreSQL).

The store is the single source of truth for a job's life, shared by every process of an
instance (gunicorn workers, Celery worker children, the thread fallback) and, on
PostgreSQL, by every host. The guarantees:

* **Claim with a lease.** `claim()` moves a job to `running` and hands out a fresh
  random `lease` token, unless the job is finished (never redone) or running elsewhere
  with a fresh heartbeat (never run twice at the same time).
* **Fenced writes.** `heartbeat`, `succeed`, `fail` and `release` only act when the
  caller still holds the current token. A run whose lease was broken (stale heartbeat,
  its worker declared dead) can no longer change the job, so at most one run ever moves
  a job to `succeeded`.
* **Journal.** A job dispatched to the thread fallback is recorded with mode `threads`
  before it runs; one that never finished is found again after a crash.

How they hold. Every state change is ONE conditional statement, `UPDATE jobs SET ...
WHERE id = :id AND <the state the change is allowed from>`, and its row count (or the
row it RETURNs) says whether it happened. No change reads the row first and decides in
Python, so no isolation level above the default is needed:

* SQLite: one writer at a time for the whole file (WAL, busy timeout), each statement
  atomic, so the WHERE clause sees the latest committed row.
* PostgreSQL, READ COMMITTED: an UPDATE that finds its row being changed by another
  transaction waits for it to commit, then re-evaluates the WHERE clause on the new row
  version (and skips the row when it no longer matches). Of two hosts claiming one
  job, the second sees `status = 'running'` with a fresh heartbeat and changes nothing;
  a fenced write from a run whose token was replaced matches no row.

What the WHERE clauses fence: a claim needs `status = 'queued'`, or `running` with a
heartbeat older than the lease, and attempts below the cap; finished rows never match
(never redone). The fenced writes need `lease = :token AND status = 'running'`; a
broken lease changed the token (or cleared it), so the old holder's writes match
nothing. Timestamps are the writer's `time.time()`: hosts need synchronised clocks
(NTP), with skew far below the lease (30 s).
"""
from __future__ import annotations

import builtins
import json
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from app.db import as_url, engine_for
from app.db.schema import jobs
from app.jobs.names import FINISHED, JOB_KINDS, JOB_MODES

_CHUNK = 500  # ids per IN (...) list
_CLAIM_ROUNDS = 3  # a job that keeps changing under a claim is reported busy


@dataclass
class Job:
    id: str
    owner: str
    kind: str
    params: dict
    queue: str
    status: str = "queued"
    progress: float = 0.0
    message: str = ""
    mode: str | None = None
    worker: str | None = None
    task_id: str | None = None
    error: str | None = None
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    output_path: str | None = None  # relative to STORAGE_DIR (Settings.in_storage)
    # Beyond the contract: which Celery node (or thread pool) holds it, when it was
    # last handed to the broker, and the current lease token.
    worker_node: str | None = None
    dispatched_at: float | None = None
    lease: str | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class Claim:
    """What `claim()` decided: `claimed` (run it with `token`), `done`, `busy`, `missing`,
    or `exhausted` (too many attempts; the job is now failed)."""
    outcome: str
    job: Job | None
    token: str | None = None


def _row_to_job(row) -> Job:
    data = dict(row._mapping)
    data["params"] = json.loads(data["params"])
    return Job(**data)


def new_job_id() -> str:
    return uuid.uuid4().hex


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _claimable(stale_before: float):
    """Rows a claim may take: queued, or running with a lapsed lease. Never finished."""
    c = jobs.c
    return sa.or_(c.status == "queued",
                  sa.and_(c.status == "running",
                          sa.or_(c.heartbeat_at.is_(None), c.heartbeat_at <= stale_before)))


def _held(job_id: str, token: str):
    """The fence: only the run holding the current lease token matches."""
    return sa.and_(jobs.c.id == job_id, jobs.c.lease == token, jobs.c.status == "running")


class JobStore:
    """Thread-safe, process-safe, host-safe access to the `jobs` table.

    `target` is a database URL (or a SQLite file path). The engine is looked up per call
    (`engine_for`), so a store built before a fork never hands the child its parent's
    connections.
    """

    def __init__(self, target: str | Path):
        self.url = as_url(target)

    @property
    def engine(self) -> Engine:
        return engine_for(self.url)

    def _write(self, statement) -> int:
        with self.engine.begin() as conn:
            return conn.execute(statement).rowcount

    def _update_returning(self, where, **values) -> Job | None:
        with self.engine.begin() as conn:
            row = conn.execute(jobs.update().where(where).values(**values)
                               .returning(*jobs.c)).first()
        return _row_to_job(row) if row is not None else None

    def _select(self, where) -> list[Job]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(jobs).where(where).order_by(jobs.c.created_at))
            return [_row_to_job(row) for row in rows]

    # --- creation and reads ------------------------------------------------------
    def create(self, *, owner: str, kind: str, params: dict, queue: str,
               job_id: str | None = None, message: str = "queued") -> Job:
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        job = Job(id=job_id or new_job_id(), owner=owner, kind=kind, params=dict(params),
                  queue=queue, message=message, created_at=time.time())
        self._write(jobs.insert().values(
            id=job.id, owner=owner, kind=kind, params=json.dumps(job.params, sort_keys=True),
            queue=queue, status="queued", progress=0, message=message, attempts=0,
            created_at=job.created_at))
        return job

    def get(self, job_id: str) -> Job | None:
        found = self._select(jobs.c.id == job_id)
        return found[0] if found else None

    def list(self, *, owner: str | None = None, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[Job]:
        query = sa.select(jobs)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if status is not None:
            query = query.where(jobs.c.status == status)
        query = query.order_by(jobs.c.created_at.desc(), jobs.c.id) \
            .limit(int(limit)).offset(int(offset))
        with self.engine.connect() as conn:
            return [_row_to_job(row) for row in conn.execute(query)]

    def counts(self) -> dict[tuple[str, str], int]:
        """{(kind, status): n}, for metrics."""
        query = sa.select(jobs.c.kind, jobs.c.status, sa.func.count()) \
            .group_by(jobs.c.kind, jobs.c.status)
        with self.engine.connect() as conn:
            return {(kind, status): n for kind, status, n in conn.execute(query)}

    def duration_histogram(self, buckets: Sequence[float]) -> dict[tuple[str, str], tuple]:
        """{(kind, status): ([n with duration <= bucket, ...], n, total seconds)} over
        finished jobs, bucketed in SQL (one row per kind and status)."""
        c = jobs.c
        elapsed = c.finished_at - c.started_at
        duration = sa.case((elapsed > 0, elapsed), else_=0.0)
        counters = [sa.func.sum(sa.case((duration <= bound, 1), else_=0)) for bound in buckets]
        query = sa.select(c.kind, c.status, sa.func.count(), sa.func.sum(duration), *counters) \
            .where(c.finished_at.is_not(None), c.started_at.is_not(None),
                   c.status.in_(FINISHED)).group_by(c.kind, c.status)
        with self.engine.connect() as conn:
            return {(row[0], row[1]): ([int(v or 0) for v in row[4:]], int(row[2]),
                                       float(row[3] or 0)) for row in conn.execute(query)}

    # --- dispatch bookkeeping -------------------------------------------------------
    def set_dispatch(self, job_id: str, *, mode: str, task_id: str | None = None,
                     worker_node: str | None = None) -> bool:
        """Record where a job is being sent, before it is sent (the journal entry for
        threads). Only a queued job changes; False means it is running or finished and
        must not be sent anywhere."""
        if mode not in JOB_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        return self._write(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued")
                           .values(mode=mode, task_id=sa.func.coalesce(task_id, jobs.c.task_id),
                                   worker_node=worker_node, dispatched_at=None,
                                   heartbeat_at=time.time())) == 1

    def mark_published(self, job_id: str, when: float | None = None) -> None:
        """The broker accepted the message. Written after the publish returned, so a
        reconciler that snapshots the broker after this time is sure to see the message
        (or its consumer)."""
        self._write(jobs.update().where(jobs.c.id == job_id, jobs.c.mode == "celery")
                    .values(dispatched_at=when or time.time()))

    def note_queued(self, job_id: str, message: str) -> bool:
        """Record a fact about a queued job in its message (e.g. the reconciler's one
        re-send of a lost message, which a second loss reads)."""
        return self._write(jobs.update().where(jobs.c.id == job_id, jobs.c.status == "queued")
                           .values(message=message)) == 1

    def touch_queued(self, job_ids: Iterable[str]) -> None:
        """Keep the journal entries of jobs waiting in a live thread pool fresh."""
        now = time.time()
        for chunk in _chunks(job_ids):
            self._write(jobs.update().where(jobs.c.status == "queued", jobs.c.id.in_(chunk))
                        .values(heartbeat_at=now))

    # --- the lease protocol ----------------------------------------------------------
    def claim(self, job_id: str, *, worker: str, worker_node: str | None = None,
              lease_seconds: float = 30.0, max_attempts: int = 5) -> Claim:
        """Atomically take a job to run. See the module docstring for the guarantees."""
        job = None
        for _ in range(_CLAIM_ROUNDS):
            now = time.time()
            claimable = sa.and_(jobs.c.id == job_id, _claimable(now - lease_seconds))
            token = uuid.uuid4().hex
            job = self._update_returning(
                sa.and_(claimable, jobs.c.attempts < max_attempts),
                status="running", lease=token, worker=worker, worker_node=worker_node,
                attempts=jobs.c.attempts + 1, started_at=now, heartbeat_at=now, error=None,
                message="started")
            if job is not None:
                return Claim("claimed", job, token)
            job = self.get(job_id)  # only reports why; every change stays conditional
            if job is None:
                return Claim("missing", None)
            if job.finished:
                return Claim("done", job)
            if job.status == "running" and (job.heartbeat_at or 0) > now - lease_seconds:
                return Claim("busy", job)
            if job.attempts >= max_attempts:
                job = self._update_returning(
                    sa.and_(claimable, jobs.c.attempts >= max_attempts),
                    status="failed", lease=None, message="failed", finished_at=now,
                    error=sa.literal("gave up after ") + sa.cast(jobs.c.attempts, sa.Text)
                    + " attempts (the job kept interrupting its worker)")
                if job is not None:
                    return Claim("exhausted", job)
            # It changed between our statements (released, its lease broken): again.
        return Claim("busy", job)

    def heartbeat(self, job_id: str, token: str, *, progress: float | None = None,
                  message: str | None = None) -> bool:
        """Renew the lease (and record progress). False: the lease is lost, stop working."""
        c = jobs.c
        return self._write(jobs.update().where(_held(job_id, token)).values(
            heartbeat_at=time.time(), progress=sa.func.coalesce(progress, c.progress),
            message=sa.func.coalesce(message, c.message))) == 1

    def succeed(self, job_id: str, token: str, *, output_path: str,
                message: str = "done") -> bool:
        """`output_path` relative to STORAGE_DIR (`Settings.storage_relative`)."""
        now = time.time()
        return self._write(jobs.update().where(_held(job_id, token)).values(
            status="succeeded", progress=1, message=message, output_path=output_path,
            error=None, lease=None, finished_at=now, heartbeat_at=now)) == 1

    def fail(self, job_id: str, token: str | None, error: str) -> bool:
        """Fail a claimed job (token) or, with token None, one that was never claimed."""
        now = time.time()
        if token is None:
            where = sa.and_(jobs.c.id == job_id, jobs.c.status == "queued")
            return self._write(jobs.update().where(where).values(
                status="failed", error=error, message="failed", finished_at=now)) == 1
        return self._write(jobs.update().where(_held(job_id, token)).values(
            status="failed", error=error, message="failed", lease=None, finished_at=now,
            heartbeat_at=now)) == 1

    def fail_purged(self, jobs_and_tasks: Iterable[tuple[str, str | None]],
                    error: str) -> set[str]:
        """Fail queued Celery jobs whose broker messages an administrator purged.

        `jobs_and_tasks` are (job id, task id) pairs: a job changes only while it is still
        queued on Celery with that same task id, so a job a worker claimed meanwhile, or
        one the reconciler re-published under a new task id, is left alone. One
        transaction. Returns the ids of the jobs failed."""
        now, failed = time.time(), set()
        c = jobs.c
        with self.engine.begin() as conn:
            for job_id, task_id in jobs_and_tasks:
                changed = conn.execute(jobs.update().where(
                    c.id == job_id, c.status == "queued", c.mode == "celery",
                    c.task_id.is_not_distinct_from(task_id)).values(
                    status="failed", error=error, message="failed", lease=None,
                    finished_at=now))
                if changed.rowcount == 1:
                    failed.add(job_id)
        return failed

    def release(self, job_id: str, token: str, message: str) -> bool:
        """Give a claimed job back (a transient failure will be retried)."""
        return self._write(jobs.update().where(_held(job_id, token)).values(
            status="queued", lease=None, message=message, heartbeat_at=time.time())) == 1

    def break_lease(self, job_id: str, *, stale_before: float | None = None,
                    worker_node: str | None = None, lease: str | None = None,
                    message: str = "requeued", fail: str | None = None) -> bool:
        """Take a running job back from a holder that is gone. Every condition given must
        hold: heartbeat older than `stale_before`, run on `worker_node` (which died), lease
        exactly `lease` (whose process is gone). The old holder's token stops working at
        once (fenced writes), so it can never complete the job. With `fail`, the job is
        failed with that error instead of requeued."""
        c = jobs.c
        cond = []
        if stale_before is not None:
            cond.append(c.heartbeat_at < stale_before)
        if worker_node is not None:
            cond.append(c.worker_node == worker_node)
        if lease is not None:
            cond.append(c.lease == lease)
        if not cond:
            raise ValueError("break_lease needs stale_before, worker_node or lease")
        now = time.time()
        update = jobs.update().where(c.id == job_id, c.status == "running", *cond)
        if fail is not None:
            return self._write(update.values(
                status="failed", lease=None, error=fail, message="failed", finished_at=now,
                heartbeat_at=now)) == 1
        return self._write(update.values(status="queued", lease=None, message=message,
                                         heartbeat_at=now)) == 1

    # --- queries for the reconciler and cleanup ---------------------------------------
    # (builtins.list: below JobStore.list, a bare `list` in an annotation names the method)
    def running_jobs(self) -> builtins.list[Job]:
        return self._select(jobs.c.status == "running")

    def queue_busy(self, queue: str, since: float) -> bool:
        """Whether a job of `queue` runs now or started after `since` (work flows there)."""
        c = jobs.c
        query = sa.select(c.id).where(c.queue == queue, sa.or_(
            c.status == "running", c.started_at > since)).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def running_on(self, worker_node: str) -> builtins.list[Job]:
        return self._select(sa.and_(jobs.c.status == "running",
                                    jobs.c.worker_node == worker_node))

    def stale_running(self, stale_before: float) -> builtins.list[Job]:
        return self._select(sa.and_(jobs.c.status == "running",
                                    jobs.c.heartbeat_at < stale_before))

    def queued_celery(self, *, published_before: float, queue: str | None = None) -> builtins.list[Job]:
        c = jobs.c
        where = sa.and_(c.status == "queued", c.mode == "celery",
                        c.dispatched_at < published_before)
        if queue is not None:
            where = sa.and_(where, c.queue == queue)
        return self._select(where)

    def unpublished(self, *, stale_before: float) -> builtins.list[Job]:
        """Queued jobs nobody holds: never dispatched, or a Celery publish that did not
        complete (the web process died), or journal entries of a dead thread pool."""
        c = jobs.c
        return self._select(sa.and_(c.status == "queued", sa.or_(
            sa.and_(c.mode.is_(None), c.created_at < stale_before),
            sa.and_(c.mode == "celery", c.dispatched_at.is_(None),
                    c.heartbeat_at < stale_before),
            sa.and_(c.mode == "threads", c.heartbeat_at < stale_before))))

    def journal(self) -> builtins.list[Job]:
        """Thread-mode jobs that have not finished."""
        return self._select(sa.and_(jobs.c.mode == "threads",
                                    jobs.c.status.in_(("queued", "running"))))

    def expired(self, finished_before: float) -> builtins.list[Job]:
        return self._select(sa.and_(jobs.c.status.in_(FINISHED),
                                    jobs.c.finished_at < finished_before))

    def clear_output(self, job_id: str, message: str = "expired") -> None:
        self._write(jobs.update().where(jobs.c.id == job_id)
                    .values(output_path=None, message=message))

    def delete(self, job_ids: Iterable[str]) -> int:
        return sum(self._write(jobs.delete().where(jobs.c.id.in_(chunk)))
                   for chunk in _chunks(job_ids))

    def known_ids(self, job_ids: Iterable[str]) -> set[str]:
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(job_ids):
                found.update(conn.execute(sa.select(jobs.c.id).where(jobs.c.id.in_(chunk)))
                             .scalars())
        return found


_stores: dict[str, JobStore] = {}
_stores_lock = threading.Lock()


def store_for(target: str | Path) -> JobStore:
    """One JobStore per database per process (`settings.database_url`; a SQLite path
    is accepted too)."""
    url = as_url(target)
    with _stores_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = JobStore(url)
        return store
