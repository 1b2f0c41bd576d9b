"""Development server.

    python run.py                              HTTP only (Flask's server, HOST:PORT)
    START_CELERY_WORKER=true python run.py     also runs the Celery worker manager

For production use start_with_celery.py (gunicorn).
"""
from __future__ import annotations

import logging
import signal
import sys

from app import create_app
from app.auth.setup import announce_first_run
from app.settings import load_settings_or_exit
from app.jobs import close_services, start_reconciler
from app.supervisor import host_manager, manager_handle


def main() -> int:
    settings = load_settings_or_exit()
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    # SIGTERM unwinds like Ctrl-C, so the finally below stops the workers warm.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if settings.START_CELERY_WORKER:
            if not host_manager(app, takeover=True):
                logging.getLogger(__name__).info(
                    "another process runs the manager for %s; using it",
                    settings.INSTANCE_PATH)
        else:
            # No manager here, but journaled thread jobs and old outputs still need care.
            start_reconciler(app)
        announce_first_run(app)
        app.run(host=settings.HOST, port=settings.PORT, debug=False, use_reloader=False,
                threaded=True)
    finally:
        manager_handle(app).close()
        close_services(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
