"""`python -m app.front`: the slow-client front (started by start_with_celery.py)."""
from __future__ import annotations

import logging
import os
import signal
import sys

from app.front import UPSTREAM_ENV
from app.front.guard import FrontLimits
from app.front.server import serve
from app.settings import load_settings_or_exit


def main() -> int:
    settings = load_settings_or_exit()
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    upstream = os.environ.get(UPSTREAM_ENV)
    if not upstream:
        print(f"error: {UPSTREAM_ENV} must name gunicorn's Unix socket", file=sys.stderr)
        return 2
    if sys.platform.startswith("linux"):
        # Never outlive the process that started us, even if it is SIGKILLed.
        from app.supervisor.shim import set_parent_death_signal
        set_parent_death_signal(signal.SIGTERM)
    try:
        serve(FrontLimits.from_settings(settings), settings.HOST, settings.PORT, upstream,
              stop_timeout=settings.GUNICORN_TIMEOUT)
    except OSError as exc:
        print(f"error: cannot listen on {settings.HOST}:{settings.PORT}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
