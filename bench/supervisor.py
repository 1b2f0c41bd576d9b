"""Benchmark of the Celery worker supervisor: `python bench/supervisor.py [--rounds N]`.

Starts its own redis-server on a free loopback port and its own managers and
workers (loading `tests.supervisor.worker_app`: the project's Celery
configuration with trivial tasks), measures, prints a table, and stops
everything it started.

Figures:
- replacement after SIGKILL: kill a worker's main process -> a task sent to its
  queue is consumed by the replacement;
- redelivery of the interrupted task: SIGKILL while a task runs -> that task
  starts again on the replacement (not after the 1 h visibility timeout);
- hang detection: SIGSTOP -> the frozen worker is killed and replaced;
- throughput of 1000 trivial tasks, manager-run worker vs a hand-started
  `celery worker` with the same command line and environment;
- switch to threads after Redis dies, and back to Celery when it returns;
- the manager's idle CPU (its own threads) with default intervals.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script from anywhere: the project root must be importable.
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import redis  # noqa: E402

from app.celery_config import make_celery  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.supervisor.manager import CeleryWorkerManager  # noqa: E402
from app.supervisor.plan import PROJECT_ROOT, child_env, worker_argv  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402
from tests.supervisor.marks import marks_of  # noqa: E402

WORKER_APP = "tests.supervisor.worker_app"
TASKS = 1000


def wait_for(predicate, timeout, interval=0.01, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def settings_for(base: Path, redis_url: str, **overrides) -> Settings:
    values = dict(APP_ENV="testing", INSTANCE_PATH=base / "instance", REDIS_URL=redis_url,
                  START_CELERY_WORKER=True, EMBEDDED_REDIS=False, CELERY_QUEUES="default",
                  CELERY_CONCURRENCY=2, CELERY_HEALTH_CHECK_INTERVAL=1.0,
                  # Backoff is not what these figures measure: every restart is immediate.
                  CELERY_RESTART_DELAY=0, CELERY_MAX_RESTARTS=1000,
                  CELERY_LOG_LEVEL="WARNING",
                  JWT_SECRET_KEY="bench-" + "x" * 40)
    values.update(overrides)
    return Settings(_env_file=None, **values)


def worker_of(manager, queue="default") -> dict:
    return next(w for w in manager.status()["workers"] if w["queue"] == queue)


def running(manager) -> bool:
    workers = manager.status()["workers"]
    return bool(workers) and all(w["state"] == "RUNNING" and w["responsive"] for w in workers)


def manager_threads_cpu() -> float:
    ids = {t.native_id for t in threading.enumerate() if t.name.startswith("scm-")}
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id in ids)


# --- measurements ------------------------------------------------------------------------
def replacement_and_redelivery(manager, client, marks: Path) -> tuple[float, float]:
    """(seconds until the replacement consumed, seconds until the killed task restarted)."""
    marks.unlink(missing_ok=True)
    wait_for(lambda: running(manager), 30, what="worker running")
    interrupted = client.send_task("sup.sleep", args=[0.5, str(marks)], queue="default")
    wait_for(lambda: marks_of(marks) == ["start"], 10, what="task started")
    old = worker_of(manager)["pid"]
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    # Publish once the dead process has let go of its connection (see the tests).
    wait_for(lambda: worker_of(manager)["pid"] != old, 5, 0.002, "reap")
    probe = client.send_task("sup.whoami", queue="default")
    probe.get(timeout=30)
    replaced = time.monotonic() - killed
    wait_for(lambda: marks_of(marks)[:2] == ["start", "start"], 30, 0.005, "redelivery")
    redelivered = time.monotonic() - killed
    interrupted.get(timeout=30)
    return replaced, redelivered


def hang_detection(manager) -> float:
    wait_for(lambda: running(manager), 30, what="worker running")
    time.sleep(1.0)
    old = worker_of(manager)["pid"]
    os.kill(old, signal.SIGSTOP)
    stopped = time.monotonic()
    wait_for(lambda: worker_of(manager)["pid"] not in (None, old), 30, 0.005, "hang replaced")
    return time.monotonic() - stopped


def publish_backlog(client, rclient) -> None:
    """Queue TASKS trivial tasks while nothing consumes them."""
    rclient.delete("default")   # leftovers of the fault rounds
    for n in range(TASKS):
        client.send_task("sup.noop", args=[n], queue="default", ignore_result=True)
    assert rclient.llen("default") == TASKS


def drain_rate(rclient) -> float:
    """Tasks/s from the first message taken to the last one acked (the worker's own pace)."""
    wait_for(lambda: rclient.llen("default") < TASKS, 60, 0.001, "consumption to start")
    first = time.monotonic()
    left = rclient.llen("default") + rclient.hlen("unacked")
    wait_for(lambda: rclient.llen("default") == 0 and rclient.hlen("unacked") == 0, 120,
             0.002, "queue drained")
    return left / (time.monotonic() - first)


def hand_started_worker(settings: Settings, log: Path) -> subprocess.Popen:
    argv = worker_argv(settings, WORKER_APP, "default", 2)
    env = child_env(settings, broker_url=settings.broker_url,
                    result_backend=settings.result_backend)
    handle = open(log, "ab")
    try:
        return subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=handle,
                                stderr=handle, start_new_session=True)
    finally:
        handle.close()


def throughput(base: Path, server: RedisServer, rounds: int) -> tuple[list, list]:
    """Tasks per second per round: manager-run worker, hand-started worker.

    The backlog is queued before the worker starts, so the figure is the worker's pace,
    not the publisher's; production intervals (10 s pings, 5 s stats) are in effect.
    """
    settings = settings_for(base / "tp", server.url, START_CELERY_WORKER=False,
                            CELERY_HEALTH_CHECK_INTERVAL=10.0)
    client = make_celery(settings, role="client")
    rclient = redis.Redis(port=server.port)
    manager = CeleryWorkerManager(settings, worker_app=WORKER_APP).open()
    managed, hand = [], []

    def run_managed():
        publish_backlog(client, rclient)
        manager.start()
        managed.append(drain_rate(rclient))
        manager.stop(timeout=10)

    def run_hand():
        publish_backlog(client, rclient)
        proc = hand_started_worker(settings, base / "hand.log")
        try:
            hand.append(drain_rate(rclient))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    try:
        for round_number in range(rounds):
            # Alternate who goes first, so a drift in the machine's load favours neither.
            order = (run_managed, run_hand) if round_number % 2 == 0 else (run_hand, run_managed)
            for run in order:
                run()
    finally:
        manager.close(timeout=5)
        client.close()
    return managed, hand


def broker_switch(manager, server: RedisServer, client) -> tuple[float, float, float]:
    """(to threads after Redis dies, back to celery mode, first task consumed after return)."""
    wait_for(lambda: running(manager) and manager.health()["mode"] == "celery", 30,
             what="celery mode")
    server.kill()
    died = time.monotonic()
    wait_for(lambda: manager.health()["mode"] == "threads", 30, 0.005, "threads mode")
    to_threads = time.monotonic() - died
    time.sleep(3)
    server.start()
    back = time.monotonic()
    wait_for(lambda: manager.health()["mode"] == "celery", 60, 0.005, "celery mode")
    to_celery = time.monotonic() - back
    client.send_task("sup.whoami", queue="default").get(timeout=60)
    consumed = time.monotonic() - back
    return to_threads, to_celery, consumed


def idle_cpu(base: Path, server: RedisServer, seconds: float) -> tuple[float, float]:
    """(manager threads' CPU %, whole bench process CPU %) with 3 workers, default intervals."""
    settings = settings_for(base / "idle", server.url, CELERY_QUEUES="pdf_generation,pdf_offset,default",
                            CELERY_CONCURRENCY=3, CELERY_HEALTH_CHECK_INTERVAL=10.0)
    manager = CeleryWorkerManager(settings, worker_app=WORKER_APP).open()
    try:
        wait_for(lambda: running(manager), 60, 0.1, "workers running")
        time.sleep(2)
        me = psutil.Process()
        threads_before, process_before = manager_threads_cpu(), sum(me.cpu_times()[:2])
        time.sleep(seconds)
        threads = manager_threads_cpu() - threads_before
        process = sum(me.cpu_times()[:2]) - process_before
    finally:
        manager.close(timeout=5)
    return 100 * threads / seconds, 100 * process / seconds


# --- main ----------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="repetitions per figure")
    parser.add_argument("--throughput-rounds", type=int, default=6)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="scm-bench-supervisor-"))
    server = RedisServer(base / "redis")
    server.start()
    rows: list[tuple[str, str, str]] = []
    try:
        settings = settings_for(base / "faults", server.url)
        client = make_celery(settings, role="client")
        manager = CeleryWorkerManager(settings, worker_app=WORKER_APP).open()
        try:
            replaced, redelivered, hangs = [], [], []
            for _ in range(args.rounds):
                r, d = replacement_and_redelivery(manager, client, base / "marks.txt")
                replaced.append(r)
                redelivered.append(d)
                hangs.append(hang_detection(manager))
            to_threads, to_celery, consumed = broker_switch(manager, server, client)
        finally:
            manager.close(timeout=5)
            client.close()
        rows += [
            ("replacement consuming after SIGKILL", _s(replaced), "target < 3 s"),
            ("interrupted task redelivered after SIGKILL", _s(redelivered),
             "visibility timeout would be 1 h"),
            ("hang (SIGSTOP) detected and replaced", _s(hangs),
             f"interval {settings.CELERY_HEALTH_CHECK_INTERVAL:.0f} s, "
             f"{settings.CELERY_PING_MISSES} misses; target < 2 intervals"),
            ("Redis killed -> mode threads", f"{to_threads:.2f} s", ""),
            ("Redis back -> mode celery", f"{to_celery:.2f} s", ""),
            ("Redis back -> first task consumed", f"{consumed:.2f} s", "target < 15 s"),
        ]
        managed, hand = throughput(base, server, args.throughput_rounds)
        rows += [
            (f"throughput, {TASKS} trivial tasks, manager-run", _rate(managed),
             f"-c 2; {len(managed)} rounds, order alternated"),
            (f"throughput, {TASKS} trivial tasks, hand-started", _rate(hand),
             "same command line and environment"),
            ("throughput ratio manager / hand",
             f"{max(managed) / max(hand):.3f} best, "
             f"{statistics.median(managed) / statistics.median(hand):.3f} median",
             "target >= 0.95"),
        ]
        threads_cpu, process_cpu = idle_cpu(base, server, args.idle_seconds)
        rows += [
            ("manager idle CPU (its threads)", f"{threads_cpu:.2f} %",
             "3 workers, default 10 s interval"),
            ("bench process idle CPU (all threads)", f"{process_cpu:.2f} %", ""),
        ]
    finally:
        server.stop()
        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:
                pass
    _print(rows)


def _s(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f} s (median; min {min(values):.2f}, "
            f"max {max(values):.2f})")


def _rate(values: list[float]) -> str:
    return f"{max(values):.0f} tasks/s best, {statistics.median(values):.0f} median"


def _print(rows) -> None:
    widths = [max(len(row[i]) for row in rows + [("figure", "value", "note")])
              for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(("figure", "value", "note"), widths)))
    print(line)
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(line)


if __name__ == "__main__":
    main()
