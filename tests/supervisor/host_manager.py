"""Host a manager in this process until killed (the host-killed test and the bench use it).

    python -m tests.supervisor.host_manager WORKER_APP

Settings come from the environment. Prints one JSON line once every worker answers:
{"host": pid, "workers": {queue: pid}, "children": [pids of every descendant]}.
"""
from __future__ import annotations

import json
import os
import sys
import time

import psutil

from app.settings import Settings
from app.supervisor.manager import CeleryWorkerManager


def main() -> None:
    settings = Settings(_env_file=None)
    manager = CeleryWorkerManager(settings, worker_app=sys.argv[1]).open()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        workers = manager.status()["workers"]
        if workers and all(w["state"] == "RUNNING" and w["responsive"] for w in workers):
            break
        time.sleep(0.1)
    children = [p.pid for p in psutil.Process().children(recursive=True)]
    print(json.dumps({"host": os.getpid(),
                      "workers": {w["queue"]: w["pid"] for w in manager.status()["workers"]},
                      "children": children}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
