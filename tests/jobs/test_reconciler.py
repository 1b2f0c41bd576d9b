"""Reconciler: stale runs, unpublished jobs, messages the broker lost, a dead worker's
jobs, and the thread journal of a crashed process."""
from __future__ import annotations

import os
import socket
import subprocess
import time

import pytest
import redis

from app.jobs.dispatch import Dispatcher
from app.jobs.reconciler import Reconciler
from app.jobs.store import JobStore
from tests.conftest import free_port, make_settings
from tests.database import set_job_columns
from tests.jobs.conftest import FakeMonitor


class RecordingPool:
    def __init__(self):
        self.submitted = []

    def submit(self, job_id):
        self.submitted.append(job_id)


@pytest.fixture
def world(tmp_path, request):
    """(reconciler, store, pool, monitor, redis client or None)."""
    server = request.getfixturevalue("redis_server") if "redis" in request.keywords else None
    url = server.url if server else f"redis://127.0.0.1:{free_port()}/0"
    settings = make_settings(tmp_path, CELERY_BROKER_URL=url)
    settings.ensure_dirs()
    store = JobStore(settings.database_url)
    pool = RecordingPool()
    monitor = FakeMonitor(server is not None)
    dispatcher = Dispatcher(settings, store, pool, broker_monitor=monitor)
    reconciler = Reconciler(settings, store, dispatcher, stale_after=5, lost_after=10,
                            outage_grace=60, inspect_timeout=0.3, cleanup_interval=3600)
    client = redis.Redis.from_url(url) if server else None
    return reconciler, store, pool, monitor, client


def new_job(store, queue="pdf_generation", kind="sheets"):
    return store.create(owner="a", kind=kind, params={}, queue=queue)


def age(store, job_id, **columns):
    """Move timestamps into the past: age(store, id, heartbeat_at=30) = 30 s ago."""
    now = time.time()
    set_job_columns(store, job_id, **{name: now - seconds for name, seconds in columns.items()})


def test_stale_running_job_is_requeued_and_sent(world):
    reconciler, store, pool, _monitor, _ = world
    job = new_job(store)
    claim = store.claim(job.id, worker="ghost", worker_node="ghost@h")
    assert reconciler.tick()["stale"] == []  # fresh heartbeat: leave it alone
    age(store, job.id, heartbeat_at=30)
    assert reconciler.tick()["stale"] == [job.id]
    got = store.get(job.id)
    assert got.status == "queued" and got.mode == "threads" and pool.submitted == [job.id]
    assert not store.succeed(job.id, claim.token, output_path="/x")  # ghost is fenced off


def test_never_dispatched_job_is_sent(world):
    reconciler, store, pool, _monitor, _ = world
    job = new_job(store)
    assert reconciler.tick()["unpublished"] == []
    age(store, job.id, created_at=30)
    assert reconciler.tick()["unpublished"] == [job.id]
    assert pool.submitted == [job.id]


@pytest.mark.redis
def test_message_lost_by_the_broker_is_sent_again(world):
    reconciler, store, pool, _monitor, client = world
    lost, waiting = new_job(store), new_job(store)
    dispatcher = reconciler.dispatcher
    assert dispatcher.submit(lost) == "celery" and dispatcher.submit(waiting) == "celery"
    old_task = store.get(lost.id).task_id
    # Redis restarted without its data for `lost`: remove its message only.
    for raw in client.lrange("pdf_generation", 0, -1):
        if old_task.encode() in raw:
            client.lrem("pdf_generation", 1, raw)
    assert reconciler.tick()["lost"] == []  # too recent to judge
    age(store, lost.id, dispatched_at=60)
    age(store, waiting.id, dispatched_at=60)
    assert reconciler.tick()["lost"] == [lost.id]
    got = store.get(lost.id)
    assert got.mode == "celery" and got.task_id != old_task
    assert client.llen("pdf_generation") == 2
    assert pool.submitted == []


@pytest.mark.redis
def test_dead_worker_jobs_come_back_at_once(world):
    reconciler, store, pool, _monitor, client = world
    node = f"pdf_generation@{socket.gethostname()}"
    dead = subprocess.Popen(["true"])
    dead.wait()
    running, reserved, replaced, elsewhere = (new_job(store) for _ in range(4))
    for job in (running, reserved, replaced, elsewhere):
        reconciler.dispatcher.submit(job)
    # Workers take the oldest messages first. The dead worker had taken two: one running,
    # one reserved; its replacement (same node name, a live pool child) took the third.
    for _ in range(3):
        client.rpop("pdf_generation")
    store.claim(running.id, worker=f"{node}/{dead.pid}", worker_node=node)
    store.claim(replaced.id, worker=f"{node}/{os.getpid()}", worker_node=node)
    reconciler.child_exit_wait = 0.2
    sent = reconciler.redispatch_worker_jobs(node, "pdf_generation").result(10)
    assert sorted(sent) == sorted([running.id, reserved.id])
    assert store.get(running.id).status == "queued"
    assert store.get(replaced.id).status == "running"
    assert store.get(elsewhere.id).task_id.encode() in b"".join(
        client.lrange("pdf_generation", 0, -1))
    assert client.llen("pdf_generation") == 3


def test_long_broker_outage_moves_celery_jobs_to_threads(world):
    reconciler, store, pool, monitor, _ = world
    job = new_job(store)
    store.set_dispatch(job.id, mode="celery", task_id="t-1")
    store.mark_published(job.id)
    age(store, job.id, dispatched_at=30)
    assert reconciler.tick()["lost"] == []  # a short outage: wait for Redis
    age(store, job.id, dispatched_at=120)
    assert reconciler.tick()["lost"] == [job.id]
    assert store.get(job.id).mode == "threads" and pool.submitted == [job.id]


def test_resume_journal_of_a_dead_process(world):
    reconciler, store, pool, _monitor, _ = world
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    crashed_running, crashed_queued, alive = new_job(store), new_job(store), new_job(store)
    store.set_dispatch(crashed_running.id, mode="threads", worker_node=f"threads@{host}/{dead.pid}")
    store.claim(crashed_running.id, worker=f"threads@{host}/{dead.pid}",
                worker_node=f"threads@{host}/{dead.pid}")
    store.set_dispatch(crashed_queued.id, mode="threads", worker_node=f"threads@{host}/{dead.pid}")
    store.set_dispatch(alive.id, mode="threads", worker_node=f"threads@{host}/1")  # init runs
    resumed = reconciler.resume_journal()
    assert sorted(resumed) == sorted([crashed_running.id, crashed_queued.id])
    assert sorted(pool.submitted) == sorted(resumed)
    assert store.get(crashed_running.id).status == "queued"


def test_periodic_thread_starts_and_stops(world):
    reconciler, store, pool, _monitor, _ = world
    reconciler.interval = 0.05
    job = new_job(store)
    age(store, job.id, created_at=30)
    reconciler.start()
    try:
        deadline = time.monotonic() + 5
        while not pool.submitted and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        reconciler.stop()
    assert pool.submitted == [job.id]


def test_running_job_of_a_dead_local_process_comes_back_without_waiting(world):
    reconciler, store, pool, _monitor, _ = world
    dead = subprocess.Popen(["true"])
    dead.wait()
    job = new_job(store)
    store.claim(job.id, worker=f"pdf_generation@{socket.gethostname()}/{dead.pid}",
                worker_node=f"pdf_generation@{socket.gethostname()}")
    assert reconciler.tick()["stale"] == [job.id]
    assert pool.submitted == [job.id]


def test_celery_job_killed_at_the_time_limit_is_failed_not_rerun(world):
    reconciler, store, pool, _monitor, _ = world
    job = new_job(store)
    store.set_dispatch(job.id, mode="celery", task_id="t")
    store.claim(job.id, worker="w@elsewhere/1", worker_node="w@elsewhere")
    limit = reconciler.settings.soft_time_limit
    age(store, job.id, started_at=limit + 100, heartbeat_at=60)
    assert reconciler.tick()["stale"] == []
    got = store.get(job.id)
    assert got.status == "failed" and "time limit" in got.error and pool.submitted == []


def test_one_reconciler_per_instance_without_a_manager(tmp_path):
    from app import create_app
    from app.runtime import runtime_of
    settings = make_settings(tmp_path)
    first, second = (runtime_of(create_app(settings)).reconciler for _ in range(2))
    try:
        running = first.start()
        assert running is not None and first.start() is running
        assert second.start() is None  # the lock is taken
        first.stop()
        assert second.start() is not None
    finally:
        first.stop()
        second.stop()


def _reconciler_threads() -> int:
    import threading
    return sum(1 for t in threading.enumerate() if t.name == "job-reconciler")


@pytest.mark.parametrize("manager_first", [True, False], ids=["manager-first", "web-first"])
def test_manager_host_and_web_process_share_the_reconciler_lock(tmp_path, manager_first):
    """The manager host's reconciler takes the reconciler lease (a database row) like
    any other process's, so exactly one periodic sweep runs per instance; the manager's
    worker-lost hook works in its own process either way."""
    from app import create_app
    from app.runtime import runtime_of

    settings = make_settings(tmp_path)
    host, web = (runtime_of(create_app(settings)) for _ in range(2))
    before = _reconciler_threads()
    try:
        if manager_first:
            assert host.host_manager(takeover=False)
            assert web.reconciler.start() is None
            assert host.reconciler.running is not None
        else:
            assert web.reconciler.start() is not None
            assert host.host_manager(takeover=False)
            assert host.reconciler.running is None
        assert _reconciler_threads() - before == 1
        # The hook the manager was built with runs here, with or without the lock.
        assert host.on_worker_lost("nobody@nowhere", None).result(10) == []
        # The manager's host stopping frees the lock for someone else (and vice versa).
        host.handle.close()
        web.reconciler.stop()
        assert _reconciler_threads() == before
        assert web.reconciler.start() is not None
    finally:
        host.close()
        web.close()


@pytest.mark.redis
def test_worker_lost_hooks_and_inspects_run_on_one_long_lived_thread(world, monkeypatch):
    """Celery's reply queue is per thread: a new thread per worker death left one more
    reply-queue binding in Redis each time. All inspects now run on one thread."""
    import threading

    reconciler, store, _pool, _monitor, client = world
    control = reconciler.dispatcher.celery.control
    real_inspect, threads = control.inspect, []

    def inspect(*args, **kwargs):
        threads.append(threading.current_thread())
        return real_inspect(*args, **kwargs)

    monkeypatch.setattr(control, "inspect", inspect)
    for round_ in range(3):
        job = new_job(store)
        reconciler.dispatcher.submit(job)
        client.delete("pdf_generation")  # its worker took it, then died
        sent = reconciler.redispatch_worker_jobs(f"w{round_}@nowhere", "pdf_generation")
        assert sent.result(10) == [job.id]
        age(store, job.id, dispatched_at=60)
        client.delete("pdf_generation")
        assert reconciler.tick()["lost"] == [job.id]  # the periodic path: same thread
        assert store.fail(job.id, None, "done with it")
    assert len(threads) == 6 and len(set(threads)) == 1
    assert threads[0].is_alive()
    assert client.scard("_kombu.binding.reply.celery.pidbox") <= 1
    reconciler.stop()
    reconciler.dispatcher.close()
    assert not threads[0].is_alive()


def test_dispatcher_close_closes_its_celery_client(world):
    reconciler, *_ = world
    dispatcher = reconciler.dispatcher
    celery = dispatcher.celery
    closed = []
    celery.close = lambda: closed.append(True)
    dispatcher.close()
    assert closed == [True] and dispatcher._celery is None


def test_close_services_closes_the_dispatcher(tmp_path):
    from app import create_app
    from app.jobs import services
    from app.runtime import runtime_of

    app = create_app(make_settings(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:1/0"))
    jobs = services(app)
    closed = []
    jobs.dispatcher.celery.close = lambda: closed.append(True)
    runtime_of(app).close_jobs(wait=5)
    assert closed == [True]
    rebuilt = services(app)  # the next use builds fresh services
    assert rebuilt is not jobs
    runtime_of(app).close_jobs(wait=5)


@pytest.mark.redis
def test_queue_without_consumer_drains_to_threads_after_the_bound(world):
    reconciler, store, pool, _monitor, client = world
    consumers = {"pdf_generation": True}
    dispatcher = reconciler.dispatcher
    dispatcher.worker_available = lambda queue: consumers.get(queue, False)
    queued = [new_job(store) for _ in range(3)]
    other = new_job(store, queue="pdf_offset")
    for job in queued:
        assert dispatcher.submit(job) == "celery"
    store.set_dispatch(other.id, mode="celery", task_id="t-other")   # consumed elsewhere
    store.mark_published(other.id)
    consumers["pdf_offset"] = True
    reconciler.drain_after = 0.3
    assert reconciler.drain_unconsumed() == []            # consumed: nothing moves
    consumers["pdf_generation"] = False                   # its last consumer went away
    assert reconciler.drain_unconsumed() == []            # not for long enough yet
    assert client.llen("pdf_generation") == 3
    time.sleep(0.35)
    moved = reconciler.drain_unconsumed()
    assert sorted(moved) == sorted(job.id for job in queued)
    assert client.llen("pdf_generation") == 0             # taken back: no worker gets them
    assert sorted(pool.submitted) == sorted(moved)
    assert all(store.get(job.id).mode == "threads" for job in queued)
    assert store.get(other.id).mode == "celery"
    assert reconciler.drain_unconsumed() == []            # each moved once
    # New jobs for that queue already go to threads until a consumer returns.
    assert dispatcher.submit(new_job(store)) == "threads"
    consumers["pdf_generation"] = True
    assert dispatcher.submit(new_job(store)) == "celery"


def test_no_drain_while_the_broker_is_down_or_consumers_are_unknown(world):
    reconciler, store, pool, monitor, _ = world
    job = new_job(store)
    store.set_dispatch(job.id, mode="celery", task_id="t-1")
    store.mark_published(job.id)
    reconciler.drain_after = 0.0
    monitor.up = True
    assert reconciler.dispatcher.worker_available is None
    assert reconciler.drain_unconsumed() == []             # no manager view: unknown
    reconciler.dispatcher.worker_available = lambda queue: False
    monitor.up = False
    assert reconciler.drain_unconsumed() == []             # outage: outage_grace decides
    assert pool.submitted == []
