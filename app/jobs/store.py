"""Job records in the instance SQLite file (table `jobs`; `users` lives beside it).

The store is the single source of truth for a job's life, shared by every process of an
instance (gunicorn workers, Celery worker children, the thread fallback). Every state
change is one SQLite transaction, so the guarantees below hold across processes:

* **Claim with a lease.** `claim()` moves a job to `running` and hands out a fresh
  random `lease` token, unless the job is finished (never redone) or running elsewhere
  with a fresh heartbeat (never run twice at the same time).
* **Fenced writes.** `heartbeat`, `succeed`, `fail` and `release` only act when the
  caller still holds the current token. A run whose lease was broken (stale heartbeat,
  its worker declared dead) can no longer change the job, so at most one run ever moves
  a job to `succeeded`.
* **Journal.** A job dispatched to the thread fallback is recorded with mode `threads`
  before it runs; one that never finished is found again after a crash.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from app.db import connect
from app.jobs.names import FINISHED, JOB_KINDS, JOB_MODES

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    params        TEXT NOT NULL,
    queue         TEXT NOT NULL,
    status        TEXT NOT NULL,
    progress      REAL NOT NULL DEFAULT 0,
    message       TEXT NOT NULL DEFAULT '',
    mode          TEXT,
    worker        TEXT,
    worker_node   TEXT,
    task_id       TEXT,
    error         TEXT,
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease         TEXT,
    created_at    REAL NOT NULL,
    dispatched_at REAL,
    started_at    REAL,
    finished_at   REAL,
    heartbeat_at  REAL,
    output_path   TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner_created ON jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
"""

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
    output_path: str | None = None
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


def _row_to_job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["params"] = json.loads(data["params"])
    return Job(**data)


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Thread-safe, process-safe access to the `jobs` table.

    One SQLite connection per thread (and per process: a connection must never cross a
    fork, and Celery's prefork pool forks after importing us).
    """

    def __init__(self, db_path: Path | str):
        self.db_path = Path(db_path)
        self._local = threading.local()
        self._schema_lock = threading.Lock()
        self._schema_ready_pid: int | None = None

    # --- connections -----------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != pid:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect(self.db_path)
            self._local.conn, self._local.pid = conn, pid
            self._ensure_schema(conn, pid)
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection, pid: int) -> None:
        with self._schema_lock:
            if self._schema_ready_pid == pid:
                return
            conn.executescript(SCHEMA)
            self._schema_ready_pid = pid

    def _write(self, sql: str, args: tuple = ()) -> int:
        return self._conn().execute(sql, args).rowcount

    def _tx(self):
        return _Immediate(self._conn())

    # --- creation and reads ------------------------------------------------------
    def create(self, *, owner: str, kind: str, params: dict, queue: str,
               job_id: str | None = None, message: str = "queued") -> Job:
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        job = Job(id=job_id or new_job_id(), owner=owner, kind=kind, params=dict(params),
                  queue=queue, message=message, created_at=time.time())
        self._write(
            "INSERT INTO jobs (id, owner, kind, params, queue, status, progress, message,"
            " attempts, created_at) VALUES (?, ?, ?, ?, ?, 'queued', 0, ?, 0, ?)",
            (job.id, owner, kind, json.dumps(job.params, sort_keys=True), queue, message,
             job.created_at))
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._conn().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, *, owner: str | None = None, status: str | None = None,
             limit: int = 100, offset: int = 0) -> list[Job]:
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
        rows = self._conn().execute(sql, (*args, int(limit), int(offset))).fetchall()
        return [_row_to_job(row) for row in rows]

    def _select(self, where: str, args: tuple = ()) -> list[Job]:
        rows = self._conn().execute(
            f"SELECT * FROM jobs WHERE {where} ORDER BY created_at", args).fetchall()
        return [_row_to_job(row) for row in rows]

    def counts(self) -> dict[tuple[str, str], int]:
        """{(kind, status): n}, for metrics."""
        rows = self._conn().execute(
            "SELECT kind, status, COUNT(*) AS n FROM jobs GROUP BY kind, status").fetchall()
        return {(row["kind"], row["status"]): row["n"] for row in rows}

    # --- dispatch bookkeeping -------------------------------------------------------
    def set_dispatch(self, job_id: str, *, mode: str, task_id: str | None = None,
                     worker_node: str | None = None) -> bool:
        """Record where a job is being sent, before it is sent (the journal entry for
        threads). Only a queued job changes; False means it is running or finished and
        must not be sent anywhere."""
        if mode not in JOB_MODES:
            raise ValueError(f"unknown mode {mode!r}")
        return self._write(
            "UPDATE jobs SET mode = ?, task_id = COALESCE(?, task_id), worker_node = ?,"
            " dispatched_at = NULL, heartbeat_at = ? WHERE id = ? AND status = 'queued'",
            (mode, task_id, worker_node, time.time(), job_id)) == 1

    def mark_published(self, job_id: str, when: float | None = None) -> None:
        """The broker accepted the message. Written after the publish returned, so a
        reconciler that snapshots the broker after this time is sure to see the message
        (or its consumer)."""
        self._write("UPDATE jobs SET dispatched_at = ? WHERE id = ? AND mode = 'celery'",
                    (when or time.time(), job_id))

    def touch_queued(self, job_ids: Iterable[str]) -> None:
        """Keep the journal entries of jobs waiting in a live thread pool fresh."""
        now = time.time()
        ids = list(job_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            self._write(
                f"UPDATE jobs SET heartbeat_at = ? WHERE status = 'queued' AND id IN "
                f"({','.join('?' * len(chunk))})", (now, *chunk))

    # --- the lease protocol ----------------------------------------------------------
    def claim(self, job_id: str, *, worker: str, worker_node: str | None = None,
              lease_seconds: float = 30.0, max_attempts: int = 5) -> Claim:
        """Atomically take a job to run. See the module docstring for the guarantees."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return Claim("missing", None)
            job = _row_to_job(row)
            if job.finished:
                return Claim("done", job)
            if job.status == "running" and (job.heartbeat_at or 0) > now - lease_seconds:
                return Claim("busy", job)
            if job.attempts >= max_attempts:
                error = (f"gave up after {job.attempts} attempts (the job kept "
                         "interrupting its worker)")
                conn.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, message = 'failed',"
                    " lease = NULL, finished_at = ? WHERE id = ?", (error, now, job_id))
                job.status, job.error, job.finished_at = "failed", error, now
                return Claim("exhausted", job)
            token = uuid.uuid4().hex
            conn.execute(
                "UPDATE jobs SET status = 'running', lease = ?, worker = ?, worker_node = ?,"
                " attempts = attempts + 1, started_at = ?, heartbeat_at = ?, error = NULL,"
                " message = 'started' WHERE id = ?",
                (token, worker, worker_node, now, now, job_id))
            job.status, job.lease, job.worker, job.worker_node = "running", token, worker, \
                worker_node
            job.attempts += 1
            job.started_at = job.heartbeat_at = now
            return Claim("claimed", job, token)

    def heartbeat(self, job_id: str, token: str, *, progress: float | None = None,
                  message: str | None = None) -> bool:
        """Renew the lease (and record progress). False: the lease is lost, stop working."""
        return self._write(
            "UPDATE jobs SET heartbeat_at = ?, progress = COALESCE(?, progress),"
            " message = COALESCE(?, message) WHERE id = ? AND lease = ? AND status = 'running'",
            (time.time(), progress, message, job_id, token)) == 1

    def succeed(self, job_id: str, token: str, *, output_path: str,
                message: str = "done") -> bool:
        now = time.time()
        return self._write(
            "UPDATE jobs SET status = 'succeeded', progress = 1, message = ?, output_path = ?,"
            " error = NULL, lease = NULL, finished_at = ?, heartbeat_at = ?"
            " WHERE id = ? AND lease = ? AND status = 'running'",
            (message, output_path, now, now, job_id, token)) == 1

    def fail(self, job_id: str, token: str | None, error: str) -> bool:
        """Fail a claimed job (token) or, with token None, one that was never claimed."""
        now = time.time()
        if token is None:
            return self._write(
                "UPDATE jobs SET status = 'failed', error = ?, message = 'failed',"
                " finished_at = ? WHERE id = ? AND status = 'queued'",
                (error, now, job_id)) == 1
        return self._write(
            "UPDATE jobs SET status = 'failed', error = ?, message = 'failed', lease = NULL,"
            " finished_at = ?, heartbeat_at = ? WHERE id = ? AND lease = ? AND status = 'running'",
            (error, now, now, job_id, token)) == 1

    def fail_purged(self, jobs: Iterable[tuple[str, str | None]], error: str) -> set[str]:
        """Fail queued Celery jobs whose broker messages an administrator purged.

        `jobs` are (job id, task id) pairs: a job changes only while it is still queued on
        Celery with that same task id, so a job a worker claimed meanwhile, or one the
        reconciler re-published under a new task id, is left alone. One transaction.
        Returns the ids of the jobs failed."""
        now = time.time()
        failed: set[str] = set()
        with self._tx() as conn:
            for job_id, task_id in jobs:
                changed = conn.execute(
                    "UPDATE jobs SET status = 'failed', error = ?, message = 'failed',"
                    " lease = NULL, finished_at = ? WHERE id = ? AND status = 'queued'"
                    " AND mode = 'celery' AND task_id IS ?", (error, now, job_id, task_id))
                if changed.rowcount == 1:
                    failed.add(job_id)
        return failed

    def release(self, job_id: str, token: str, message: str) -> bool:
        """Give a claimed job back (a transient failure will be retried)."""
        return self._write(
            "UPDATE jobs SET status = 'queued', lease = NULL, message = ?, heartbeat_at = ?"
            " WHERE id = ? AND lease = ? AND status = 'running'",
            (message, time.time(), job_id, token)) == 1

    def break_lease(self, job_id: str, *, stale_before: float | None = None,
                    worker_node: str | None = None, lease: str | None = None,
                    message: str = "requeued", fail: str | None = None) -> bool:
        """Take a running job back from a holder that is gone. Every condition given must
        hold: heartbeat older than `stale_before`, run on `worker_node` (which died), lease
        exactly `lease` (whose process is gone). The old holder's token stops working at
        once (fenced writes), so it can never complete the job. With `fail`, the job is
        failed with that error instead of requeued."""
        cond, args = [], []
        if stale_before is not None:
            cond.append("heartbeat_at < ?")
            args.append(stale_before)
        if worker_node is not None:
            cond.append("worker_node = ?")
            args.append(worker_node)
        if lease is not None:
            cond.append("lease = ?")
            args.append(lease)
        if not cond:
            raise ValueError("break_lease needs stale_before, worker_node or lease")
        now = time.time()
        if fail is not None:
            return self._write(
                "UPDATE jobs SET status = 'failed', lease = NULL, error = ?, message = 'failed',"
                " finished_at = ?, heartbeat_at = ?"
                f" WHERE id = ? AND status = 'running' AND {' AND '.join(cond)}",
                (fail, now, now, job_id, *args)) == 1
        return self._write(
            "UPDATE jobs SET status = 'queued', lease = NULL, message = ?, heartbeat_at = ?"
            f" WHERE id = ? AND status = 'running' AND {' AND '.join(cond)}",
            (message, now, job_id, *args)) == 1

    # --- queries for the reconciler and cleanup ---------------------------------------
    def running_jobs(self) -> list[Job]:
        return self._select("status = 'running'")

    def running_on(self, worker_node: str) -> list[Job]:
        return self._select("status = 'running' AND worker_node = ?", (worker_node,))

    def stale_running(self, stale_before: float) -> list[Job]:
        return self._select("status = 'running' AND heartbeat_at < ?", (stale_before,))

    def queued_celery(self, *, published_before: float, queue: str | None = None) -> list[Job]:
        if queue is None:
            return self._select("status = 'queued' AND mode = 'celery' AND dispatched_at < ?",
                                (published_before,))
        return self._select("status = 'queued' AND mode = 'celery' AND dispatched_at < ?"
                            " AND queue = ?", (published_before, queue))

    def unpublished(self, *, stale_before: float) -> list[Job]:
        """Queued jobs nobody holds: never dispatched, or a Celery publish that did not
        complete (the web process died), or journal entries of a dead thread pool."""
        return self._select(
            "status = 'queued' AND ((mode IS NULL AND created_at < ?)"
            " OR (mode = 'celery' AND dispatched_at IS NULL AND heartbeat_at < ?)"
            " OR (mode = 'threads' AND heartbeat_at < ?))",
            (stale_before, stale_before, stale_before))

    def journal(self) -> list[Job]:
        """Thread-mode jobs that have not finished."""
        return self._select("mode = 'threads' AND status IN ('queued', 'running')")

    def expired(self, finished_before: float) -> list[Job]:
        return self._select("status IN ('succeeded', 'failed') AND finished_at < ?",
                            (finished_before,))

    def clear_output(self, job_id: str, message: str = "expired") -> None:
        self._write("UPDATE jobs SET output_path = NULL, message = ? WHERE id = ?",
                    (message, job_id))

    def delete(self, job_ids: Iterable[str]) -> int:
        ids = list(job_ids)
        deleted = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            deleted += self._write(
                f"DELETE FROM jobs WHERE id IN ({','.join('?' * len(chunk))})", tuple(chunk))
        return deleted

    def known_ids(self, job_ids: Iterable[str]) -> set[str]:
        ids = list(job_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._conn().execute(
                f"SELECT id FROM jobs WHERE id IN ({','.join('?' * len(chunk))})",
                tuple(chunk)).fetchall()
            found.update(row["id"] for row in rows)
        return found


class _Immediate:
    """`BEGIN IMMEDIATE ... COMMIT`: takes the write lock up front, so a read-then-write
    (the claim) cannot interleave with another process's claim."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._rollback()
            return
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (SQLITE_BUSY, disk full, I/O error) leaves the transaction
            # open on this thread's connection; every later statement of this thread
            # would then run inside it. Roll back and let the caller see the error.
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is already gone (SQLite rolls back on some errors)


_stores: dict[Path, JobStore] = {}
_stores_lock = threading.Lock()


def store_for(db_path: Path | str) -> JobStore:
    """One JobStore per database file per process (its connections are per thread)."""
    path = Path(db_path)
    with _stores_lock:
        store = _stores.get(path)
        if store is None:
            store = _stores[path] = JobStore(path)
        return store
