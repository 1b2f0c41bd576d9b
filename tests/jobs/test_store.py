"""The job store: records, the claim/lease protocol, fenced writes, the journal."""
from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from app.jobs.store import JobStore


def make(store: JobStore, **kw):
    values = dict(owner="alice", kind="calibration", params={"paper_size": "letter"},
                  queue="default")
    values.update(kw)
    return store.create(**values)


def test_create_get_list(store):
    a = make(store)
    b = make(store, owner="bob")
    got = store.get(a.id)
    assert got.status == "queued" and got.params == {"paper_size": "letter"}
    assert got.mode is None and got.attempts == 0 and got.progress == 0
    assert [j.id for j in store.list(owner="alice")] == [a.id]
    assert {j.id for j in store.list()} == {a.id, b.id}
    assert store.get("nope") is None
    assert store.counts()[("calibration", "queued")] == 2


def test_claim_then_done_is_never_redone(store):
    job = make(store)
    claim = store.claim(job.id, worker="w1")
    assert claim.outcome == "claimed" and claim.token
    assert store.get(job.id).status == "running" and store.get(job.id).attempts == 1
    assert store.succeed(job.id, claim.token, output_path="/x.pdf")
    again = store.claim(job.id, worker="w2")
    assert again.outcome == "done" and again.token is None
    assert store.get(job.id).worker == "w1"


def test_running_job_with_fresh_heartbeat_is_busy(store):
    job = make(store)
    first = store.claim(job.id, worker="w1", lease_seconds=30)
    second = store.claim(job.id, worker="w2", lease_seconds=30)
    assert first.outcome == "claimed" and second.outcome == "busy"


def test_stale_lease_can_be_taken_over_and_old_holder_is_fenced(store):
    job = make(store)
    old = store.claim(job.id, worker="w1", lease_seconds=0.2)
    time.sleep(0.3)
    new = store.claim(job.id, worker="w2", lease_seconds=0.2)
    assert new.outcome == "claimed" and new.token != old.token
    # The old run can neither renew, nor complete, nor fail the job any more.
    assert not store.heartbeat(job.id, old.token, progress=0.5)
    assert not store.succeed(job.id, old.token, output_path="/old.pdf")
    assert not store.fail(job.id, old.token, "boom")
    assert store.succeed(job.id, new.token, output_path="/new.pdf")
    final = store.get(job.id)
    assert final.status == "succeeded" and final.output_path == "/new.pdf"
    assert final.worker == "w2" and final.attempts == 2


def test_attempts_are_capped(store):
    job = make(store)
    for _ in range(3):
        claim = store.claim(job.id, worker="w", max_attempts=3)
        assert claim.outcome == "claimed"
        assert store.release(job.id, claim.token, "retry")
    claim = store.claim(job.id, worker="w", max_attempts=3)
    assert claim.outcome == "exhausted"
    assert store.get(job.id).status == "failed" and "3 attempts" in store.get(job.id).error


def test_only_one_of_many_concurrent_claims_wins(store):
    job = make(store)
    outcomes = []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        outcomes.append(JobStore(store.url).claim(job.id, worker="t").outcome)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy"] * 7 + ["claimed"]


def _claim_in_process(path, job_id, queue):
    queue.put(JobStore(path).claim(job_id, worker="p").outcome)


def test_only_one_process_wins_the_claim(store):
    job = make(store)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(store.url, job.id, queue))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    outcomes = sorted(queue.get(timeout=5) for _ in procs)
    assert outcomes == ["busy"] * 3 + ["claimed"]


def test_heartbeat_records_progress(store):
    job = make(store)
    claim = store.claim(job.id, worker="w")
    assert store.heartbeat(job.id, claim.token, progress=0.25, message="page 1")
    got = store.get(job.id)
    assert got.progress == 0.25 and got.message == "page 1"


def test_release_requeues(store):
    job = make(store)
    claim = store.claim(job.id, worker="w")
    assert store.release(job.id, claim.token, "retrying")
    got = store.get(job.id)
    assert got.status == "queued" and got.lease is None
    assert store.claim(job.id, worker="w").outcome == "claimed"


def test_break_lease_by_worker_node(store):
    job = make(store)
    claim = store.claim(job.id, worker="q@h/1", worker_node="q@h")
    assert store.running_on("q@h")[0].id == job.id
    assert not store.break_lease(job.id, worker_node="other@h")
    assert store.break_lease(job.id, worker_node="q@h")
    assert store.get(job.id).status == "queued"
    assert not store.succeed(job.id, claim.token, output_path="/x")


def test_dispatch_bookkeeping_and_queries(store):
    celery_job = make(store)
    thread_job = make(store)
    never = make(store)
    assert store.set_dispatch(celery_job.id, mode="celery", task_id="t1")
    assert store.set_dispatch(thread_job.id, mode="threads", worker_node="threads@h/1")
    now = time.time()
    # Published celery jobs only count once mark_published ran.
    assert store.queued_celery(published_before=now + 1) == []
    store.mark_published(celery_job.id)
    assert [j.id for j in store.queued_celery(published_before=time.time() + 1)] == \
        [celery_job.id]
    assert [j.id for j in store.journal()] == [thread_job.id]
    # Unpublished: nothing is stale yet; later all three kinds would be, except the
    # published Celery one.
    assert store.unpublished(stale_before=now - 10) == []
    stale = {j.id for j in store.unpublished(stale_before=time.time() + 1)}
    assert stale == {thread_job.id, never.id}
    # A live pool refreshes its journal entries.
    cutoff = time.time() + 0.001
    time.sleep(0.01)
    store.touch_queued([thread_job.id])
    assert thread_job.id not in {j.id for j in store.unpublished(stale_before=cutoff)}


def test_set_dispatch_refuses_running_or_finished(store):
    job = make(store)
    claim = store.claim(job.id, worker="w")
    assert not store.set_dispatch(job.id, mode="threads")
    store.succeed(job.id, claim.token, output_path="/x")
    assert not store.set_dispatch(job.id, mode="celery", task_id="t")


def test_unknown_kind_rejected(store):
    with pytest.raises(ValueError):
        make(store, kind="bogus")


def test_failed_commit_rolls_back_and_leaves_the_store_usable(store):
    """A COMMIT that fails (here a deferred foreign key; in production a busy file, an
    I/O error or a lost PostgreSQL connection) rolls back what the transaction did."""
    import sqlalchemy as sa

    job = make(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        conn.execute(sa.text(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER"
            " REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)"))
    with pytest.raises(sa.exc.IntegrityError):
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE jobs SET message = 'half' WHERE id = :id"),
                         {"id": job.id})
            conn.execute(sa.text("INSERT INTO child (id, parent) VALUES (1, 42)"))
    assert store.get(job.id).message == "queued"  # the half-done write was rolled back
    assert store.claim(job.id, worker="w").outcome == "claimed"


# --- many hosts: processes x threads racing over the same jobs ---------------------------
RACERS, THREADS_EACH, RACE_JOBS = 3, 3, 16


def _race(url: str, job_ids: list[str], lease: float, hold: float, results) -> None:
    """One 'host': threads that each try every job (in its own order), run what they
    claim for up to `hold` seconds, then try to finish it."""
    import os
    import random

    store = JobStore(url)

    def worker(index: int) -> None:
        name, rng = f"p{os.getpid()}/t{index}", random.Random(f"{os.getpid()}-{index}")
        order = list(job_ids)
        rng.shuffle(order)
        for job_id in order:
            claim = store.claim(job_id, worker=name, lease_seconds=lease, max_attempts=100)
            if claim.outcome != "claimed":
                results.put((job_id, claim.outcome, name, None))
                continue
            time.sleep(rng.uniform(0, hold))
            won = store.succeed(job_id, claim.token, output_path=f"outputs/{job_id}.pdf")
            results.put((job_id, "succeeded" if won else "fenced", name, claim.token))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS_EACH)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _run_race(store, *, lease: float, hold: float) -> tuple[list, list]:
    job_ids = [make(store).id for _ in range(RACE_JOBS)]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(store.url, job_ids, lease, hold, results))
             for _ in range(RACERS)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in range(RACERS * THREADS_EACH * RACE_JOBS)]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return job_ids, outcomes


def test_racing_hosts_run_every_job_exactly_once(store):
    """9 claimers in 3 processes, a lease no run outlives: each job is claimed by one
    run only, and every later claim sees it running (busy) or finished (done)."""
    job_ids, outcomes = _run_race(store, lease=30.0, hold=0.01)
    for job_id in job_ids:
        mine = [o for o in outcomes if o[0] == job_id]
        assert [o[1] for o in mine].count("succeeded") == 1, mine
        assert {o[1] for o in mine} <= {"succeeded", "busy", "done"}, mine
        job = store.get(job_id)
        assert job.status == "succeeded" and job.attempts == 1


def test_racing_hosts_with_lapsing_leases_finish_each_job_once(store):
    """Runs that outlive a short lease are taken over; the overtaken run's final write is
    fenced off, so exactly one run finishes each job, and it is the last holder."""
    job_ids, outcomes = _run_race(store, lease=0.15, hold=0.3)
    takeovers = 0
    for job_id in job_ids:
        mine = [o for o in outcomes if o[0] == job_id]
        winners = [o for o in mine if o[1] == "succeeded"]
        assert len(winners) == 1, mine
        job = store.get(job_id)
        assert job.status == "succeeded" and job.worker == winners[0][2]
        claimed = [o for o in mine if o[3] is not None]
        takeovers += len(claimed) - 1
        # Claims after the job was finished saw "done": a finished job is never redone.
        assert job.attempts == len(claimed)
    assert takeovers > 0, "no lease lapsed: the test did not exercise the fence"
