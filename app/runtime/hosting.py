"""Who hosts what: per entry point, whether this process runs the instance's manager
and its jobs reconciler. The one place that decides it."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from app.settings import Settings


class Entry(enum.Enum):
    DEV = "dev"                        # run.py, start_dev_with_celery.py
    PRODUCTION = "production"          # start_with_celery.py, with or without --no-web
    GUNICORN = "gunicorn"              # `gunicorn -c gunicorn.conf.py` run directly
    GUNICORN_CHILD = "gunicorn-child"  # gunicorn under start_with_celery.py


@dataclass(frozen=True)
class Hosting:
    manager: bool     # try to own the manager here (the instance's lock decides)
    takeover: bool    # and take it over when its host process dies
    reconciler: bool  # run the jobs reconciler here, unless another process does


def hosting_for(entry: Entry, settings: Settings) -> Hosting:
    workers_here = settings.START_CELERY_WORKER
    return {
        Entry.DEV: Hosting(manager=workers_here, takeover=True, reconciler=True),
        # The manager runs here either way (embedded Redis, status, start by API);
        # START_CELERY_WORKER decides whether it starts workers at boot.
        Entry.PRODUCTION: Hosting(manager=True, takeover=False, reconciler=True),
        # Every gunicorn worker tries the lock after it boots; one wins.
        Entry.GUNICORN: Hosting(manager=workers_here, takeover=True, reconciler=True),
        # The parent process hosts both; its HTTP workers reach them through the socket.
        Entry.GUNICORN_CHILD: Hosting(manager=False, takeover=False, reconciler=False),
    }[entry]
