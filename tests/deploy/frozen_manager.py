"""start_with_celery.py with a test-only freeze of the manager thread.

While the file named by SCM_TEST_FREEZE_FILE exists, the manager thread blocks inside
its own loop (in the watchdog tick that loop calls each iteration), exactly as a hung
manager would; HTTP, the prober and the main thread keep running. SIGSTOP cannot do
this: it stops every thread of the process, HTTP included, so it would not show that
the watchdog notices a hang the health probe does not. Removing the file unfreezes.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from app import sdnotify  # noqa: E402

FLAG = Path(os.environ.pop("SCM_TEST_FREEZE_FILE"))
_tick = sdnotify.Notifier.watchdog_tick


def _freezable_tick(self: sdnotify.Notifier) -> None:
    while FLAG.exists():
        time.sleep(0.05)
    _tick(self)


sdnotify.Notifier.watchdog_tick = _freezable_tick  # type: ignore[method-assign]

import start_with_celery  # noqa: E402

if __name__ == "__main__":
    sys.exit(start_with_celery.main())
