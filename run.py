"""Development server.

    python run.py                              HTTP only (Flask's server, HOST:PORT)
    START_CELERY_WORKER=true python run.py     also runs the Celery worker manager

For production use start_with_celery.py (gunicorn).
"""
from __future__ import annotations

import logging
import sys

from app import create_app
from app.db import engine_or_exit
from app.runtime import DevServer, Entry, hosting_for, serve
from app.settings import load_settings_or_exit


def main() -> int:
    settings = load_settings_or_exit()
    logging.basicConfig(level=settings.LOG_LEVEL.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine_or_exit(settings.database_url)  # one clear line when it cannot be reached
    app = create_app(settings)
    return serve(app, hosting_for(Entry.DEV, settings), DevServer(app, settings))


if __name__ == "__main__":
    sys.exit(main())
