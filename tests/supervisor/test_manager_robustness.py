"""Manager robustness: lock-free reads while booting, stale processes of a previous boot,
no respawn during shutdown, spawn errors, broker clients, stuck consumers, busy admin calls."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from app.broker import BrokerClient, BrokerMonitor
from app.supervisor import prober as prober_module
from app.supervisor.errors import BrokerUnavailable
from app.supervisor.pidfile import StateFile, matching_process, stop_stale
from app.supervisor.plan import PROJECT_ROOT, child_env
from app.supervisor.prober import Prober
from app.supervisor.redis_server import EmbeddedRedis
from app.supervisor.worker_slot import BACKOFF, FAILED, STARTING, STOPPED
from tests.conftest import make_settings, wait_for
from tests.supervisor.conftest import TEST_APP, all_running, worker
from tests.supervisor.fakes import fleet_for

HOST = socket.gethostname()


def _stubborn_process() -> subprocess.Popen:
    """A leftover of a 'previous boot' that ignores SIGTERM (the sweep waits it out)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ("import signal, time; signal.signal(signal.SIGTERM, "
                                "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.mark.timeout(60)
def test_readers_do_not_wait_while_the_manager_thread_boots(tmp_path, redis_server, managers):
    settings = make_settings(tmp_path, REDIS_URL=redis_server.url, START_CELERY_WORKER=False,
                             CELERY_QUEUES="default")
    settings.ensure_dirs()
    stubborn = _stubborn_process()
    try:
        ps = psutil.Process(stubborn.pid)
        StateFile(settings.run_dir / "children.json").save(
            [{"name": "default@old", "pid": stubborn.pid, "create_time": ps.create_time(),
              "cmdline": ps.cmdline()}])
        manager = managers(settings, open_now=False)
        opener = threading.Thread(target=manager.open, daemon=True)
        opener.start()
        # The boot is now stuck in the stale sweep (SIGTERM ignored: ~5 s until SIGKILL).
        wait_for(lambda: manager.health()["status"] != "unhealthy", 5)
        time.sleep(0.5)
        assert opener.is_alive(), "the boot should still be busy"
        for read in (manager.health, lambda: manager.mode, manager.restart_totals):
            started = time.perf_counter()
            read()
            took = time.perf_counter() - started
            assert took < 0.05, f"{read} took {took:.3f}s while the manager booted"
        started = time.perf_counter()
        status = manager.status()   # queue depths ask the broker: allow for that only
        assert time.perf_counter() - started < 1.0
        assert status["workers"] == []
        assert manager.health()["status"] in ("degraded", "unhealthy")
        opener.join(30)
        assert not opener.is_alive()
        assert stubborn.wait(5) is not None
    finally:
        if stubborn.poll() is None:
            os.killpg(stubborn.pid, signal.SIGKILL)
            stubborn.wait()
        stubborn.stdout.close()


@pytest.mark.timeout(60)
def test_stale_embedded_redis_of_a_previous_boot_is_stopped(tmp_path, managers):
    settings = make_settings(tmp_path, EMBEDDED_REDIS=True, START_CELERY_WORKER=False,
                             CELERY_QUEUES="default")
    settings.ensure_dirs()
    embedded = EmbeddedRedis(settings)
    if not embedded.available:
        pytest.skip("no redis-server binary")
    # A "previous boot": its Redis still runs and the state file lists it.
    old = embedded.make_process(child_env(settings, broker_url=None, result_backend=None),
                                PROJECT_ROOT)
    old.spawn()
    try:
        assert embedded.wait_ready(old, 10)
        record = old.record()
        StateFile(settings.run_dir / "children.json").save([record])
        # redis-server rewrote its argv: the recorded cmdline no longer matches...
        assert psutil.Process(old.pid).cmdline() != record["cmdline"]
        # ...but pid + create time + executable still identify it.
        assert matching_process(record) is not None

        manager = managers(settings)
        wait_for(lambda: old.has_exited(), 5, message="stale Redis stopped")
        old.reap()
        assert embedded.answers()
        servers = [p for p in psutil.process_iter(["exe", "cmdline"])
                   if p.info["exe"] and "redis-server" in os.path.basename(p.info["exe"])
                   and any(str(embedded.socket_path) in part
                           for part in (p.info["cmdline"] or []))]
        assert [p.pid for p in servers] == [manager.status()["broker"]["process"]["pid"]]
    finally:
        if old.alive and not old.has_exited():
            old.signal_group(signal.SIGKILL)
        for _ in range(50):
            if old.reap() is not None:
                break
            time.sleep(0.05)


def test_stop_stale_ignores_an_other_program_with_the_recorded_pid(tmp_path, no_leftovers):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                            start_new_session=True)
    try:
        ps = psutil.Process(proc.pid)
        entry = {"name": "redis", "pid": proc.pid, "create_time": ps.create_time(),
                 "cmdline": ["/usr/bin/redis-server", "--port", "0"],
                 "exe": "/usr/bin/redis-server", "shim_exe": "/nonexistent/python",
                 "cmdline_stable": False}
        assert matching_process(entry) is None
        assert stop_stale([entry], timeout=0.5) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_embedded_redis_is_not_respawned_from_backoff_during_shutdown(tmp_path):
    fleet, clock, made = fleet_for(make_settings(tmp_path, CELERY_RESTART_DELAY=0))
    slot = fleet.add_redis()
    fleet.spawn(slot, "boot")
    made[-1].die()
    fleet.reap()                       # the first death restarts at once, through BACKOFF
    assert slot.state == BACKOFF
    fleet.shutting_down = True
    fleet.tick(clock.advance(0.1))
    assert slot.state == STOPPED and len(made) == 1
    fleet.shutting_down = False
    fleet.spawn(slot, "again")
    made[-1].die()
    fleet.reap()
    fleet.tick(clock.advance(0.1))
    assert slot.state == STARTING and len(made) == 3


class _Unspawnable:
    def __init__(self, attempts):
        self.attempts = attempts
        self.log = type("L", (), {"write_line": lambda self, text: None})()

    def spawn(self):
        self.attempts.append(1)
        raise OSError(24, "Too many open files")


def test_spawn_error_goes_through_backoff_without_recursion(tmp_path):
    attempts = []
    fleet, clock, _made = fleet_for(
        make_settings(tmp_path, CELERY_RESTART_DELAY=0, CELERY_MAX_RESTARTS=5),
        factory=lambda *args, **kwargs: _Unspawnable(attempts))
    fleet.wanted = True
    slot = fleet.slots["default"] = fleet.new_slot("default", 1)
    fleet.spawn(slot, "test")
    assert len(attempts) == 1, "a failed spawn must not call spawn again by itself"
    assert slot.state == BACKOFF and slot.backoff_until <= clock()
    for _ in range(20):
        if slot.state == FAILED:
            break
        fleet.tick(clock.advance(0.01))
    assert slot.state == FAILED
    assert len(attempts) == 6 and "Too many open files" in slot.last_error


@pytest.mark.timeout(60)
def test_tasks_and_stats_answer_at_once_when_no_worker_runs(fast_settings, managers):
    manager = managers(fast_settings(START_CELERY_WORKER=False))
    started = time.monotonic()
    assert manager.tasks() == {"workers": {}}
    assert manager.stats() == {"workers": {}}
    assert time.monotonic() - started < 0.5


@pytest.mark.timeout(60)
def test_control_clients_are_closed_with_the_manager(fast_settings, managers):
    made = {}

    def recording(settings, url, name):
        client = made[name] = BrokerClient(settings, url, name=name)
        return client
    manager = managers(fast_settings(START_CELERY_WORKER=False), client_factory=recording)
    manager.purge(["default"])   # made on first use: the admin client
    wait_for(lambda: "scm-broker-prober" in made, 5)
    admin, prober = made["scm-broker-client"], made["scm-broker-prober"]
    assert admin is not prober
    closed = []
    for control in (admin, prober):
        original = control.app.close
        control.app.close = lambda original=original: (closed.append(1), original())
    admin.purge(["default"])
    manager.close(timeout=3)
    assert len(closed) == 2 and admin._closed and prober._closed
    with pytest.raises(BrokerUnavailable):
        admin.ping([], 0.1)


def _remote_worker(settings, queue: str) -> subprocess.Popen:
    """A worker the manager does not run (celery_worker.py, another host)."""
    env = child_env(settings, broker_url=settings.broker_url,
                    result_backend=settings.result_backend)
    argv = [sys.executable, "-m", "celery", "-A", TEST_APP, "worker", "-Q", queue, "-c", "1",
            "-n", f"remote-{queue}@%h", "--without-mingle", "--without-gossip",
            "--loglevel", "WARNING"]
    return subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_worker_available_without_local_workers_asks_who_consumes(
        fast_settings, managers, monkeypatch):
    monkeypatch.setattr(prober_module, "CONSUMERS_TTL", 1.0)
    settings = fast_settings(START_CELERY_WORKER=False)
    manager = managers(settings)
    assert not manager.worker_available("default")   # nobody consumes it
    remote = _remote_worker(settings, "default")
    try:
        wait_for(lambda: manager.worker_available("default"), 30, 0.2, "remote consumer seen")
        assert not manager.worker_available("pdf_offset")
    finally:
        remote.terminate()
        remote.wait(15)
    # When the check itself cannot run, the broker decides.
    monkeypatch.setattr(BrokerClient, "consumers",
                        lambda self, timeout: (_ for _ in ()).throw(BrokerUnavailable("x")))
    wait_for(lambda: manager.worker_available("pdf_offset"), 10, 0.2, "unknown means trust")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stuck_consumer_is_restarted_and_its_queue_drains(
        fast_settings, managers, client_app, caplog):
    settings = fast_settings(CELERY_QUEUES="default", CELERY_HEALTH_CHECK_INTERVAL=1.0)
    manager = managers(settings)
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker running")
    name = f"default@{HOST}"
    old_pid = worker(manager.status(), "default")["pid"]
    client = client_app(settings)
    # Alive and answering pings, but no longer consuming (celery#8030's symptom).
    replies = client.control.cancel_consumer("default", destination=[name], reply=True,
                                             timeout=5)
    assert replies and name in replies[0]
    results = [client.send_task("sup.whoami", queue="default") for _ in range(2)]
    time.sleep(1.5)
    assert worker(manager.status(), "default")["pid"] == old_pid  # pings alone see nothing
    wait_for(lambda: worker(manager.status(), "default")["pid"] not in (None, old_pid),
             20, 0.1, "stalled worker replaced")
    for result in results:
        assert result.get(timeout=20) == name
    w = worker(manager.status(), "default")
    assert w["restarts_by_reason"]["hang"] == 1
    assert w["last_error"].startswith("stalled")
    assert "stalled" in caplog.text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_busy_admin_client_does_not_delay_hang_detection(fast_settings, managers):
    settings = fast_settings(CELERY_QUEUES="default", CELERY_HEALTH_CHECK_INTERVAL=1.0)
    made = {}

    def recording(settings, url, name):
        client = made[name] = BrokerClient(settings, url, name=name)
        return client
    manager = managers(settings, client_factory=recording)
    wait_for(lambda: all_running(manager, 1), 30, 0.1, "worker running")
    old_pid = worker(manager.status(), "default")["pid"]
    # A slow admin call (inspect, purge...) holds the admin broker client for 5 s.
    admin = made["scm-broker-client"]
    blocker = threading.Thread(target=lambda: admin.call(lambda: time.sleep(5), 8), daemon=True)
    blocker.start()
    time.sleep(0.1)
    os.kill(old_pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    # health() reads the snapshot (status() would wait on the busy admin client's depths).
    wait_for(lambda: manager.health()["restart_count"] == 1, 10, 0.02, "hang detected")
    detected = time.monotonic() - stopped_at
    assert detected <= 2 * settings.CELERY_HEALTH_CHECK_INTERVAL + 0.3, \
        f"hang detected after {detected:.2f}s while the admin client was busy"
    wait_for(lambda: worker(manager.status(), "default")["pid"] not in (None, old_pid),
             10, 0.05, "replacement")
    blocker.join(10)


def test_uncounted_ping_rounds_are_logged_once_per_episode(caplog):
    prober = Prober(BrokerMonitor(None), lambda: None, snapshot=dict, report=print,
                    interval=1.0)
    caplog.set_level("INFO", logger="app.supervisor.prober")
    for _ in range(3):
        prober.log_uncounted("the broker did not answer either")
    assert caplog.text.count("worker pings not counted") == 1
    prober.counted_again()   # what a counted round does
    prober.log_uncounted("again")
    assert caplog.text.count("worker pings not counted") == 2
