"""The composition root: who hosts what, one serve(), the lifecycle notifier seam."""
from __future__ import annotations

import os
import signal
import threading

import requests

from app import create_app
from app.runtime import DevServer, Entry, Hosting, hosting_for, runtime_of, serve
from app.runtime.status_reporter import StatusReporter
from tests.conftest import free_port, make_settings, wait_for
from tests.web.fakes import FakeManager


class RecordingNotifier:
    def __init__(self, on_ready=None):
        self.events: list[tuple] = []
        self.on_ready = on_ready

    def ready(self, status):
        self.events.append(("ready", status))
        if self.on_ready:
            self.on_ready()

    def status(self, text):
        self.events.append(("status", text))

    def stopping(self):
        self.events.append(("stopping",))


def _sigterm_soon():
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()


def test_every_entry_point_has_one_hosting_decision(tmp_path):
    with_workers = make_settings(tmp_path, START_CELERY_WORKER=True)
    without = make_settings(tmp_path)
    assert hosting_for(Entry.DEV, with_workers) == Hosting(True, True, True)
    assert hosting_for(Entry.DEV, without) == Hosting(False, True, True)
    assert hosting_for(Entry.PRODUCTION, without) == Hosting(True, False, True)
    assert hosting_for(Entry.GUNICORN, with_workers) == Hosting(True, True, True)
    assert hosting_for(Entry.GUNICORN_CHILD, with_workers) == Hosting(False, False, False)


def test_serve_serves_http_reports_ready_and_stops_everything_on_sigterm(tmp_path):
    port = free_port()
    app = create_app(make_settings(tmp_path, HOST="127.0.0.1", PORT=port))
    seen = {}

    def on_ready():  # HTTP answers by the time ready is sent
        seen["health"] = requests.get(f"http://127.0.0.1:{port}/api/celery/health",
                                      timeout=5).json()
        _sigterm_soon()

    notifier = RecordingNotifier(on_ready)
    previous = signal.getsignal(signal.SIGTERM)
    code = serve(app, Hosting(manager=False, takeover=False, reconciler=True),
                 DevServer(app, app.config["SETTINGS"]), notifier=notifier)
    assert code == 0
    assert seen["health"]["mode"] == "threads"
    assert notifier.events == [("ready", "mode threads, workers 0/0 running"), ("stopping",)]
    assert runtime_of(app).reconciler.running is None  # stopped with the rest
    assert signal.getsignal(signal.SIGTERM) is previous
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
        raise AssertionError("the HTTP server still answers")
    except requests.ConnectionError:
        pass


def test_serve_without_http_hosts_the_manager_until_sigterm(tmp_path):
    app = create_app(make_settings(tmp_path))
    runtime = runtime_of(app)
    managers = []
    runtime.new_manager = lambda settings: managers.append(FakeManager()) or managers[-1]
    notifier = RecordingNotifier(_sigterm_soon)
    assert serve(app, Hosting(manager=True, takeover=False, reconciler=True),
                 notifier=notifier) == 0
    assert len(managers) == 1 and managers[0].opened.is_set() and managers[0].closed.is_set()
    assert notifier.events[0][0] == "ready" and notifier.events[-1] == ("stopping",)
    assert not runtime.handle.is_owner


class _ChangingHealth:
    def __init__(self):
        self.running = 0

    def health(self):
        return {"mode": "celery", "workers": {"running": self.running, "expected": 3}}


def test_status_reporter_tells_only_changes():
    handle, notifier = _ChangingHealth(), RecordingNotifier()
    reporter = StatusReporter(handle, notifier, interval=0.02)
    reporter.start()
    try:
        handle.running = 3
        wait_for(lambda: notifier.events, 5, message="a status line")
        threading.Event().wait(0.2)  # several more polls, no change
    finally:
        reporter.stop()
    assert notifier.events == [("status", "mode celery, workers 3/3 running")]
